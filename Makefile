# langgraph-kafka — the same commands locally and in CI. `make` (or `make help`) lists them.

SHELL := /bin/bash
.DEFAULT_GOAL := help

REGISTRY ?= localhost:5000
TAG ?= latest
NAMESPACE ?= langgraph
OPENAI_API_KEY ?=
RELEASE ?= langgraph-kafka
SERVICES := task-generator agent-comms task-solver
PLATFORM ?= linux/amd64

# cargo-nextest when installed, else cargo test.
NEXTEST := $(shell cargo nextest --version >/dev/null 2>&1 && echo yes)

.PHONY: help
help: ## list the targets
	@echo "langgraph-kafka — make <target> [REGISTRY=… TAG=… NAMESPACE=… OPENAI_API_KEY=…]"
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-14s %s\n", $$1, $$2}'

# ---------------------------------------------------------------- local
.PHONY: bootstrap
bootstrap: ## install the local broker (Tansu) and model (SmolLM2) into .venv (idempotent)
	@scripts/bootstrap.sh

.PHONY: build-local
build-local: ## cargo build --release of the three services
	cargo build --release --locked $(addprefix -p ,$(SERVICES))

.PHONY: run-local
run-local: build-local ## start broker, local model and the three services in the background (logs and data in .local/; CHECKPOINTER=sqlite unless set)
	@scripts/run-local.sh

.PHONY: stop-local
stop-local: ## stop what run-local started
	@scripts/stop-local.sh

.PHONY: demo
demo: build-local ## run-local, then POST a conversation to /generate-task and print the task and its result
	@scripts/demo.sh

# ---------------------------------------------------------------- checks
.PHONY: test
test: bootstrap ## every test: unit, router, end-to-end on Tansu, the local-model smoke test, chart checks
	# The crash tests run the task-solver and task-generator binaries as their own processes.
	cargo build --locked -p task-solver --bin task-solver -p task-generator --bin task-generator
ifeq ($(NEXTEST),yes)
	cargo nextest run --workspace --locked --no-fail-fast
else
	cargo test --workspace --locked --no-fail-fast
endif
	cargo test --workspace --locked --doc
	$(MAKE) --no-print-directory k8s-check
	scripts/test-k8s-check.sh

.PHONY: lint
lint: ## cargo fmt --check; shellcheck and ruff on the scripts; no import cycle between modules; clippy and rustdoc with warnings as errors
	cargo fmt --all -- --check
	@scripts/lint-scripts.sh
	@python3 scripts/module_cycles.py crates/*/src examples/*/src bench/src
	cargo clippy --workspace --all-targets --locked -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

.PHONY: k8s-check
k8s-check: ## lint, render and validate the Helm chart, Dockerfiles and YAML offline
	@scripts/k8s-check.sh

.PHONY: test-k8s-check
test-k8s-check: ## prove k8s-check fails on planted bugs (broken template, bad values, …)
	@scripts/test-k8s-check.sh


.PHONY: bench
bench: ## graph-engine benches next to LangGraph's baseline, measured in the same run
	@scripts/bench.sh

.PHONY: bench-view
bench-view: ## results-view benchmark: time to ready, memory and lookup latency per store with N tasks on the topics (N, MEMORY_N, STORES, C)
	@scripts/bench-view.sh

.PHONY: bench-streams
bench-streams: ## live-streams benchmark: time to first token after POST, and 1000 streams on one replica (RSS, CPU) next to 1000 clients polling (N, C, STREAMS, TOKENS)
	@scripts/bench-streams.sh

.PHONY: bench-review
bench-review: ## human-review benchmark: solver throughput and RSS with 1000 tasks waiting for review next to none (N, WAITING)
	@scripts/bench-review.sh

.PHONY: bench-agents
bench-agents: ## agent-runtime benchmark: send_message round trip p50/p99 and requests/s between two processes on Tansu, 1 and C callers (N, C, CONCURRENCY)
	@scripts/bench-agents.sh

.PHONY: bench-pipeline
bench-pipeline: ## end-to-end POST → result benchmark on Tansu + an OpenAI stand-in, next to the Python system (N, C, DELAY_MS, MODE)
	@scripts/bench-pipeline.sh

# ---------------------------------------------------------------- images and cluster
.PHONY: build
build: ## build the three images: $(REGISTRY)/langgraph-kafka/<service>:$(TAG)
	@for s in $(SERVICES); do \
	  echo "==> $(REGISTRY)/langgraph-kafka/$$s:$(TAG)"; \
	  docker buildx build --platform $(PLATFORM) -f docker/Dockerfile.$$s -t $(REGISTRY)/langgraph-kafka/$$s:$(TAG) --load . || exit 1; \
	done

.PHONY: push
push: ## push the three images
	@for s in $(SERVICES); do docker push $(REGISTRY)/langgraph-kafka/$$s:$(TAG) || exit 1; done

HELM_SET := --set image.repository=$(REGISTRY)/langgraph-kafka --set image.tag=$(TAG) \
	$(if $(OPENAI_API_KEY),--set env.openaiApiKey=$(OPENAI_API_KEY))

.PHONY: deploy-dev
deploy-dev: ## helm upgrade --install with values-dev.yaml (built-in Kafka, small resources)
	helm upgrade --install $(RELEASE) ./helm --namespace $(NAMESPACE) --create-namespace \
	  --values values-dev.yaml $(HELM_SET) --wait --timeout 10m

.PHONY: deploy
deploy: ## helm upgrade --install with the production values (helm/values.yaml)
	helm upgrade --install $(RELEASE) ./helm --namespace $(NAMESPACE) --create-namespace \
	  $(HELM_SET) --wait --timeout 10m

.PHONY: status
status: ## pods, services and jobs of the release
	kubectl get pods,svc,jobs,hpa -n $(NAMESPACE) -l app.kubernetes.io/instance=$(RELEASE)

.PHONY: logs
logs: ## follow the logs of every service
	kubectl logs -n $(NAMESPACE) -l app.kubernetes.io/instance=$(RELEASE) --all-containers --prefix -f --max-log-requests 10

.PHONY: port-forward
port-forward: ## forward 8001, 8000 and 8002 to the services (Ctrl-C stops)
	@trap 'kill 0' INT TERM; \
	kubectl port-forward -n $(NAMESPACE) svc/$(RELEASE)-task-generator 8001:8001 & \
	kubectl port-forward -n $(NAMESPACE) svc/$(RELEASE)-agent-comms 8000:8000 & \
	kubectl port-forward -n $(NAMESPACE) svc/$(RELEASE)-task-solver 8002:8002 & \
	wait

.PHONY: undeploy
undeploy: ## helm uninstall the release
	helm uninstall $(RELEASE) --namespace $(NAMESPACE)
