{{/*
Naming, labels and the derived Kafka client settings shared by all templates.
*/}}

{{- define "langgraph-kafka.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Resource-name prefix: the release name when it already contains the chart name
(release "langgraph-kafka" → Service "langgraph-kafka-task-generator").
*/}}
{{- define "langgraph-kafka.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "langgraph-kafka.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "langgraph-kafka.labels" -}}
helm.sh/chart: {{ include "langgraph-kafka.chart" . }}
app.kubernetes.io/name: {{ include "langgraph-kafka.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | toString | splitList "@" | first | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: langgraph-kafka
{{- end }}

{{/* Selector labels of one component; call with (dict "root" $ "component" "task-solver"). */}}
{{- define "langgraph-kafka.selectorLabels" -}}
app.kubernetes.io/name: {{ include "langgraph-kafka.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* All labels of one component; call with (dict "root" $ "component" "task-solver"). */}}
{{- define "langgraph-kafka.componentLabels" -}}
{{ include "langgraph-kafka.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "langgraph-kafka.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "langgraph-kafka.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The three services: values key → component (binary, image and Service suffix). */}}
{{- define "langgraph-kafka.services" -}}
taskGenerator: task-generator
agentComms: agent-comms
taskSolver: task-solver
{{- end }}

{{/* Image of one service; call with (dict "root" $ "component" "task-solver"). */}}
{{- define "langgraph-kafka.image" -}}
{{- $image := .root.Values.image -}}
{{- printf "%s/%s:%s" (trimSuffix "/" $image.repository) .component ($image.tag | default .root.Chart.AppVersion | toString) }}
{{- end }}

{{/*
A value as text. Helm reads numbers from values files as float64, which print
in scientific notation from 1e6 up (604800000 → "6.048e+08"): whole numbers are
printed as integers.
*/}}
{{- define "langgraph-kafka.scalar" -}}
{{- if and (kindIs "float64" .) (eq (. | float64) (. | floor)) }}
{{- . | int64 }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{- define "langgraph-kafka.secretName" -}}
{{- default (include "langgraph-kafka.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* ---- Kafka topics ---- */}}

{{- define "langgraph-kafka.topic.events" -}}
{{- default (printf "%s-langgraph-agent-events" .Values.kafka.topicPrefix) .Values.kafka.topics.events }}
{{- end }}

{{- define "langgraph-kafka.topic.results" -}}
{{- default (printf "%s-langgraph-task-results" .Values.kafka.topicPrefix) .Values.kafka.topics.results }}
{{- end }}

{{- define "langgraph-kafka.topic.deadLetter" -}}
{{- default (printf "%s-langgraph-dead-letter" .Values.kafka.topicPrefix) .Values.kafka.topics.deadLetter }}
{{- end }}

{{- define "langgraph-kafka.topic.progress" -}}
{{- default (printf "%s-langgraph-task-progress" .Values.kafka.topicPrefix) .Values.kafka.topics.progress }}
{{- end }}

{{/* The agent runtime's topics (agent_runtime::agents::topics): the shared reply topic,
the describe topic, and the request topic of agent type task-solver. */}}
{{- define "langgraph-kafka.topic.agentReplies" -}}
{{- printf "%s-agent-replies" .Values.kafka.topicPrefix }}
{{- end }}

{{- define "langgraph-kafka.topic.agentDescribe" -}}
{{- printf "%s-agent-describe" .Values.kafka.topicPrefix }}
{{- end }}

{{- define "langgraph-kafka.topic.solverRequests" -}}
{{- printf "%s-agent-requests-task-solver" .Values.kafka.topicPrefix }}
{{- end }}

{{/* Topic configs of the results topic (the services' RESULTS_TOPIC_CONFIGS):
compacted by key (the task id), a fresh result kept whole for a day. */}}
{{- define "langgraph-kafka.resultsTopicConfigs" -}}
cleanup.policy=compact,min.compaction.lag.ms=86400000
{{- end }}

{{/* ---- PostgreSQL (the checkpointer's and the results store's) ---- */}}

{{/* "true" when the graph checkpointer uses PostgreSQL. */}}
{{- define "langgraph-kafka.database.checkpointer" -}}
{{- and .Values.checkpointer.enabled (eq .Values.checkpointer.backend "postgres") }}
{{- end }}

{{/* "true" when the results view uses PostgreSQL. */}}
{{- define "langgraph-kafka.database.resultsStore" -}}
{{- eq .Values.resultsStore.backend "postgres" }}
{{- end }}

{{/* "true" when a service of component (dict "root" $ "component" "task-solver") needs
DATABASE_URL: the solver and the generator for the checkpointer, the generator for
the results store. */}}
{{- define "langgraph-kafka.database.usedBy" -}}
{{- $checkpointer := eq (include "langgraph-kafka.database.checkpointer" .root) "true" }}
{{- $store := eq (include "langgraph-kafka.database.resultsStore" .root) "true" }}
{{- if eq .component "task-generator" }}{{ or $checkpointer $store }}
{{- else if eq .component "task-solver" }}{{ $checkpointer }}
{{- else }}false{{ end }}
{{- end }}

{{/* "true" when any service needs DATABASE_URL. */}}
{{- define "langgraph-kafka.database.used" -}}
{{- or (eq (include "langgraph-kafka.database.checkpointer" .) "true") (eq (include "langgraph-kafka.database.resultsStore" .) "true") }}
{{- end }}

{{- define "langgraph-kafka.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "langgraph-kafka.fullname" .) }}
{{- end }}

{{/* min.insync.replicas for a replication factor: RF-1, at least 1. */}}
{{- define "langgraph-kafka.minInsyncReplicas" -}}
{{- $rf := int . -}}
{{- if gt $rf 2 }}{{ sub $rf 1 }}{{ else }}1{{ end }}
{{- end }}

{{/* ---- Kafka client settings (what the services, the hook Job and KEDA use) ---- */}}

{{- define "langgraph-kafka.kafka.fullname" -}}
{{- printf "%s-kafka" (include "langgraph-kafka.fullname" .) }}
{{- end }}

{{- define "langgraph-kafka.kafka.headlessService" -}}
{{- printf "%s-kafka-headless" (include "langgraph-kafka.fullname" .) }}
{{- end }}

{{- define "langgraph-kafka.kafka.bootstrapServers" -}}
{{- if .Values.kafka.builtin.enabled }}
{{- printf "%s:9092" .Values.kafka.builtin.serviceName }}
{{- else }}
{{- required "kafka.external.bootstrapServers is required when kafka.builtin.enabled=false" .Values.kafka.external.bootstrapServers }}
{{- end }}
{{- end }}

{{/* The same, resolvable from other namespaces (the KEDA operator's). */}}
{{- define "langgraph-kafka.kafka.bootstrapServersFqdn" -}}
{{- if .Values.kafka.builtin.enabled }}
{{- printf "%s.%s.svc.%s:9092" .Values.kafka.builtin.serviceName .Release.Namespace .Values.clusterDomain }}
{{- else }}
{{- include "langgraph-kafka.kafka.bootstrapServers" . }}
{{- end }}
{{- end }}

{{- define "langgraph-kafka.kafka.securityProtocol" -}}
{{- if .Values.kafka.builtin.enabled }}
{{- ternary "SASL_PLAINTEXT" "PLAINTEXT" .Values.kafka.builtin.sasl.enabled }}
{{- else }}
{{- .Values.kafka.external.securityProtocol }}
{{- end }}
{{- end }}

{{/* "true" when the clients authenticate with SASL. */}}
{{- define "langgraph-kafka.kafka.sasl" -}}
{{- hasPrefix "SASL_" (include "langgraph-kafka.kafka.securityProtocol" .) }}
{{- end }}

{{/* "true" when the clients talk TLS to the brokers. */}}
{{- define "langgraph-kafka.kafka.tls" -}}
{{- hasSuffix "SSL" (include "langgraph-kafka.kafka.securityProtocol" .) }}
{{- end }}

{{- define "langgraph-kafka.kafka.saslMechanism" -}}
{{- if .Values.kafka.builtin.enabled }}PLAIN{{ else }}{{ .Values.kafka.external.saslMechanism }}{{ end }}
{{- end }}

{{/* Secret with the SASL credentials (and the CA bundle of an external cluster). */}}
{{- define "langgraph-kafka.kafka.credentialsSecret" -}}
{{- if .Values.kafka.builtin.enabled }}
{{- default (printf "%s-kafka-sasl" (include "langgraph-kafka.fullname" .)) .Values.kafka.builtin.sasl.existingSecret }}
{{- else }}
{{- .Values.kafka.external.existingSecret }}
{{- end }}
{{- end }}

{{- define "langgraph-kafka.kafka.usernameKey" -}}
{{- if .Values.kafka.builtin.enabled }}username{{ else }}{{ .Values.kafka.external.usernameKey }}{{ end }}
{{- end }}

{{- define "langgraph-kafka.kafka.passwordKey" -}}
{{- if .Values.kafka.builtin.enabled }}password{{ else }}{{ .Values.kafka.external.passwordKey }}{{ end }}
{{- end }}

{{/* Key of the PEM CA bundle; empty when the public CA store is used. */}}
{{- define "langgraph-kafka.kafka.caKey" -}}
{{- if and (not .Values.kafka.builtin.enabled) (eq (include "langgraph-kafka.kafka.tls" .) "true") }}
{{- .Values.kafka.external.caKey }}
{{- end }}
{{- end }}

{{- define "langgraph-kafka.kafka.caDir" -}}/etc/langgraph-kafka/kafka-ca{{- end }}

{{/* SASL credential env vars for a container; call with (dict "root" $ "prefix" "KAFKA_")
and, for a service, "service" (its values key, e.g. "taskSolver"): an external cluster's
kafka.external.serviceSecrets.<service> then replaces the shared Secret. */}}
{{- define "langgraph-kafka.kafka.saslEnv" -}}
{{- if eq (include "langgraph-kafka.kafka.sasl" .root) "true" }}
{{- $secret := include "langgraph-kafka.kafka.credentialsSecret" .root }}
{{- if and .service (not .root.Values.kafka.builtin.enabled) }}
{{- with index (.root.Values.kafka.external.serviceSecrets | default dict) .service }}{{ $secret = . }}{{ end }}
{{- end }}
- name: {{ .prefix }}SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ include "langgraph-kafka.kafka.usernameKey" .root }}
- name: {{ .prefix }}SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ include "langgraph-kafka.kafka.passwordKey" .root }}
{{- end }}
{{- end }}

{{/* NetworkPolicy egress rule to the Kafka brokers (client port). */}}
{{- define "langgraph-kafka.kafka.egressRule" -}}
{{- if .Values.kafka.builtin.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "langgraph-kafka.selectorLabels" (dict "root" . "component" "kafka") | nindent 10 }}
  ports:
    - protocol: TCP
      port: 9092
{{- else }}
- to:
    {{- range .Values.kafka.external.cidrs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    {{- range .Values.kafka.external.ports }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
{{- end }}
{{- end }}

{{/* NetworkPolicy egress rule for DNS lookups (any resolver: CoreDNS or node-local). */}}
{{- define "langgraph-kafka.dnsEgressRule" -}}
- ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end }}

{{/*
Checks the settings that a JSON schema cannot express; included by the ConfigMap
so that a bad combination fails at render time with a message naming the keys.
*/}}
{{- define "langgraph-kafka.validate" -}}
{{- $v := .Values -}}
{{- if and (not $v.kafka.builtin.enabled) (not $v.kafka.external.bootstrapServers) }}
{{- fail "kafka.external.bootstrapServers is required when kafka.builtin.enabled=false" }}
{{- end }}
{{- if and (not $v.kafka.builtin.enabled) (hasPrefix "SASL_" $v.kafka.external.securityProtocol) (not $v.kafka.external.existingSecret) }}
{{- fail "kafka.external.existingSecret (keys kafka.external.usernameKey/passwordKey) is required for a SASL_* securityProtocol" }}
{{- end }}
{{- if and (not $v.kafka.builtin.enabled) $v.kafka.external.caKey (not $v.kafka.external.existingSecret) }}
{{- fail "kafka.external.caKey needs kafka.external.existingSecret" }}
{{- end }}
{{- if and $v.kafka.builtin.enabled (gt (int $v.kafka.topics.replicationFactor) (int $v.kafka.builtin.replicaCount)) }}
{{- fail (printf "kafka.topics.replicationFactor (%d) exceeds kafka.builtin.replicaCount (%d)" (int $v.kafka.topics.replicationFactor) (int $v.kafka.builtin.replicaCount)) }}
{{- end }}
{{- if ge (add $v.shutdownDrainSecs $v.preStopSleepSeconds | int) (int $v.terminationGracePeriodSeconds) }}
{{- fail "shutdownDrainSecs + preStopSleepSeconds must be less than terminationGracePeriodSeconds" }}
{{- end }}
{{- if ge (add $v.httpShutdownGraceSecs $v.preStopSleepSeconds | int) (int $v.terminationGracePeriodSeconds) }}
{{- fail "httpShutdownGraceSecs + preStopSleepSeconds must be less than terminationGracePeriodSeconds" }}
{{- end }}
{{- if and $v.checkpointer.enabled (eq $v.checkpointer.backend "postgres") (not $v.checkpointer.databaseUrl) (not $v.existingSecret) (not $v.postgresql.enabled) }}
{{- fail "checkpointer.backend=postgres needs checkpointer.databaseUrl, postgresql.enabled or an existingSecret holding DATABASE_URL" }}
{{- end }}
{{- if and (eq $v.resultsStore.backend "postgres") (not $v.checkpointer.databaseUrl) (not $v.existingSecret) (not $v.postgresql.enabled) }}
{{- fail "resultsStore.backend=postgres needs a DATABASE_URL: checkpointer.databaseUrl, postgresql.enabled or an existingSecret holding DATABASE_URL" }}
{{- end }}
{{- if and (eq $v.resultsStore.backend "sqlite") $v.resultsStore.sqlite.persistence.enabled (ne (int $v.taskGenerator.replicaCount) 1) }}
{{- fail (printf "resultsStore.sqlite.persistence.enabled needs taskGenerator.replicaCount: 1, not %d (one ReadWriteOnce volume holds the SQLite view); for more replicas use resultsStore.backend=postgres" (int $v.taskGenerator.replicaCount)) }}
{{- end }}
{{- if gt (int $v.taskSolver.autoscaling.minReplicas) (int $v.taskSolver.autoscaling.maxReplicas) }}
{{- fail "taskSolver.autoscaling.minReplicas exceeds maxReplicas" }}
{{- end }}
{{- end }}
