"""The values a lint or a render sees: ``--values`` files, then ``--set`` flags."""

import yaml


def merge(base, override):
    """Helm's coalescing of -f files and --set flags: maps merge, the rest replaces.

    ``base`` is changed in place and returned.
    """
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def user_values(files, sets):
    """The files (paths) merged in order, then the ``--set`` expressions, as Helm does."""
    import helm_python as helm

    values = {}
    for path in files or []:
        with open(path, encoding="utf-8") as handle:
            merge(values, yaml.safe_load(handle) or {})
    for expression in sets or []:
        merge(values, helm.parse_set_string(expression))
    return values
