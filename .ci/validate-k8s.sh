#!/usr/bin/env bash
# Checks the Kubernetes manifests in k8s/: the base and every overlay render
# with `kubectl kustomize`, every rendered document validates against the
# Kubernetes API schemas (kubernetes-validate, strict), custom resources the
# validator does not know validate against a local schema in k8s/schemas/
# (named <first label of the API group>-<kind>.schema.json, e.g.
# keda-scaledobject.schema.json), and every invalidator config shipped in a
# ConfigMap validates against schemas/config.schema.json, with the rules files
# it names against schemas/rules.schema.json. Cross-checks: the rules files a
# config names are in its ConfigMap, ConfigMaps and Secrets that pods use
# exist in the render (or in the base's, for an overlay that runs beside it),
# and terminationGracePeriodSeconds stays above shutdown.drain_timeout.
# If an invalidator binary is at hand (INVALIDATOR_BIN, or .build/), each
# config is also checked with `invalidator validate --config`.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_update_once() {
    if [ "$apt_updated" -eq 0 ]; then
        apt-get update -qq
        apt_updated=1
    fi
}

# kubectl: Debian has no `kubectl` package, only `kubernetes-client` (kubectl
# 1.20, whose built-in kustomize is too old for these kustomizations). Use the
# installed one; else `kubectl` from a configured repository; else Debian's.
if ! command -v kubectl >/dev/null 2>&1; then
    apt_update_once
    if apt-cache policy kubectl 2>/dev/null | grep -Eq 'Candidate: [^(]'; then
        apt-get install -y -qq kubectl >/dev/null
    else
        apt-get install -y -qq kubernetes-client >/dev/null
    fi
fi
kubectl_minor="$(kubectl version --client -o json 2>/dev/null |
    python3 -c 'import json, re, sys; print(re.sub(r"\D.*", "", json.load(sys.stdin)["clientVersion"]["minor"]))')" || kubectl_minor=0
if [ "${kubectl_minor:-0}" -lt 21 ]; then
    echo "k8s: kubectl 1.21 or later is needed (kustomize v4+: directories in resources, patches); found 1.${kubectl_minor:-?}" >&2
    exit 1
fi

if ! command -v kubernetes-validate >/dev/null 2>&1; then
    python3 -m pip install --quiet kubernetes-validate
fi
if ! command -v check-jsonschema >/dev/null 2>&1; then
    python3 -m pip install --quiet check-jsonschema
fi
if ! python3 -c 'import yaml' 2>/dev/null; then
    python3 -m pip install --quiet pyyaml
fi

invalidator_bin="${INVALIDATOR_BIN:-}"
if [ -z "$invalidator_bin" ]; then
    for candidate in .build/release/invalidator .build/debug/invalidator; do
        if [ -x "$candidate" ]; then
            invalidator_bin="$candidate"
            break
        fi
    done
fi

schema_dir="$(pwd)/schemas"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

documents=0
configs=0
failures=0

fail() {
    echo "FAIL  $*" >&2
    failures=$((failures + 1))
}

# Validates $2.. against schemas/$1.schema.json, resolving the schemas'
# relative $refs to the files next to it (as .ci/validate-schemas.sh does).
validate_schema() {
    local schema="$1"
    shift
    check-jsonschema --base-uri "file://$schema_dir/$schema.schema.json" \
        --schemafile "$schema_dir/$schema.schema.json" "$@"
}

echo "== render"
targets=(k8s/base)
for overlay in k8s/overlays/*/; do
    [ -f "$overlay/kustomization.yaml" ] && targets+=("${overlay%/}")
done
rendered=()
for target in "${targets[@]}"; do
    name="$(basename "$target")"
    if kubectl kustomize "$target" >"$work/$name.yaml" 2>"$work/$name.err"; then
        if [ -s "$work/$name.err" ]; then
            # kustomize's deprecation warnings: keep the kustomizations current.
            cat "$work/$name.err" >&2
            fail "$target renders with warnings"
        else
            echo "ok    $target"
        fi
        rendered+=("$name")
    else
        cat "$work/$name.err" >&2
        fail "$target does not render"
    fi
done

# Splits each render into one file per document, extracts the invalidator
# configs from ConfigMaps, and runs the cross-checks.
echo "== split and cross-check"
python3 - "$work" "${rendered[@]}" <<'PY' || failures=$((failures + $?))
import os, re, sys, yaml

work, renders = sys.argv[1], sys.argv[2:]
problems = []

def duration_seconds(text):
    total, rest = 0.0, str(text).strip()
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", rest):
        total += float(number) * units[unit]
    if not re.fullmatch(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h))+", rest):
        raise ValueError(f"bad duration {text!r}")
    return total

def pod_specs(doc):
    spec = doc.get("spec") or {}
    template = spec.get("template") or (spec.get("jobTemplate") or {}).get("spec", {}).get("template")
    if template:
        yield template.get("spec") or {}

docs_by_render = {}
for render in renders:
    with open(os.path.join(work, render + ".yaml")) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    docs_by_render[render] = docs

def names(render, kind):
    return {d["metadata"]["name"] for d in docs_by_render.get(render, []) if d.get("kind") == kind}

listing = open(os.path.join(work, "documents.tsv"), "w")
config_listing = open(os.path.join(work, "configs.tsv"), "w")
for render, docs in docs_by_render.items():
    out = os.path.join(work, "docs", render)
    os.makedirs(out, exist_ok=True)
    config_maps = {}
    for index, doc in enumerate(docs):
        kind, name = doc.get("kind", "?"), doc.get("metadata", {}).get("name", "?")
        path = os.path.join(out, f"{index:02d}-{kind.lower()}-{name}.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(doc, f, sort_keys=False)
        listing.write(f"{render}\t{path}\t{doc.get('apiVersion', '')}\t{kind}\t{name}\n")
        if kind != "ConfigMap" or "invalidator.yaml" not in (doc.get("data") or {}):
            continue
        folder = os.path.join(work, "configs", render, name)
        os.makedirs(folder, exist_ok=True)
        for key, value in doc["data"].items():
            with open(os.path.join(folder, key), "w") as f:
                f.write(value)
        try:
            config = yaml.safe_load(doc["data"]["invalidator.yaml"]) or {}
        except yaml.YAMLError as error:
            problems.append(f"{render}: ConfigMap {name}: invalidator.yaml is not YAML: {error}")
            continue
        config_maps[name] = config
        rules = config.get("rules")
        paths = [rules] if isinstance(rules, str) else [r for r in rules or [] if isinstance(r, str)]
        for rules_path in paths:
            if os.path.isabs(rules_path) or "/" in rules_path:
                problems.append(f"{render}: ConfigMap {name}: rules path {rules_path!r} must be a key of the same ConfigMap")
            elif rules_path not in doc["data"]:
                problems.append(f"{render}: ConfigMap {name}: rules file {rules_path!r} is not in the ConfigMap")
            else:
                try:
                    yaml.safe_load(doc["data"][rules_path])
                except yaml.YAMLError as error:
                    problems.append(f"{render}: ConfigMap {name}: {rules_path} is not YAML: {error}")
        present = [p for p in paths if "/" not in p and p in doc["data"]]
        config_listing.write(f"{render}\t{folder}\t{' '.join(present)}\n")

    # Pods: referenced ConfigMaps exist (here, or in the base the overlay runs
    # beside), and the grace period outlasts the drain of the config they mount.
    for doc in docs:
        for spec in pod_specs(doc):
            where = f"{render}: {doc['kind']} {doc['metadata']['name']}"
            grace = spec.get("terminationGracePeriodSeconds", 30)
            for volume in spec.get("volumes") or []:
                cm = (volume.get("configMap") or {}).get("name")
                if not cm:
                    continue
                if cm in names(render, "ConfigMap"):
                    config = config_maps.get(cm)
                elif cm in names("base", "ConfigMap"):
                    config = next((yaml.safe_load(d["data"]["invalidator.yaml"]) for d in docs_by_render["base"]
                                   if d.get("kind") == "ConfigMap" and d["metadata"]["name"] == cm), None)
                else:
                    problems.append(f"{where}: mounts ConfigMap {cm}, which neither this render nor the base defines")
                    continue
                if config is None:
                    continue
                drain = ((config.get("shutdown") or {}).get("drain_timeout")) or "20s"
                try:
                    if grace <= duration_seconds(drain):
                        problems.append(f"{where}: terminationGracePeriodSeconds {grace} must exceed shutdown.drain_timeout {drain}")
                except ValueError as error:
                    problems.append(f"{where}: {error}")

for problem in problems:
    print(f"FAIL  {problem}", file=sys.stderr)
if not problems:
    print(f"ok    {sum(len(d) for d in docs_by_render.values())} documents from {len(docs_by_render)} renders")
sys.exit(min(len(problems), 100))
PY

echo "== kubernetes schemas"
while IFS=$'\t' read -r render path api_version kind name; do
    label="$render: $kind/$name"
    if output="$(kubernetes-validate --strict "$path" 2>&1)"; then
        if grep -q "Couldn't find schema" <<<"$output"; then
            group="${api_version%%/*}"
            schema="k8s/schemas/${group%%.*}-$(tr '[:upper:]' '[:lower:]' <<<"$kind").schema.json"
            if [ ! -f "$schema" ]; then
                fail "$label ($api_version): no Kubernetes schema and no $schema"
            elif check-jsonschema --schemafile "$schema" "$path" >/dev/null; then
                echo "ok    $label ($(basename "$schema"))"
            else
                check-jsonschema --schemafile "$schema" "$path" || true
                fail "$label"
            fi
        else
            echo "ok    $label"
        fi
    else
        echo "$output" >&2
        fail "$label"
    fi
    documents=$((documents + 1))
done <"$work/documents.tsv"

echo "== invalidator configs"
while IFS=$'\t' read -r render folder rules_files; do
    label="$render: ConfigMap $(basename "$folder")"
    if validate_schema config "$folder/invalidator.yaml" >/dev/null; then
        echo "ok    $label invalidator.yaml (config)"
    else
        validate_schema config "$folder/invalidator.yaml" || true
        fail "$label invalidator.yaml"
    fi
    for rules in $rules_files; do
        if validate_schema rules "$folder/$rules" >/dev/null; then
            echo "ok    $label $rules (rules)"
        else
            validate_schema rules "$folder/$rules" || true
            fail "$label $rules"
        fi
    done
    if [ -n "$invalidator_bin" ]; then
        # Placeholder secrets: only their presence matters to `validate`.
        if output="$(env REDIS_PASSWORD=placeholder KAFKA_USERNAME=placeholder \
            KAFKA_PASSWORD=placeholder "$invalidator_bin" validate --config "$folder/invalidator.yaml" 2>&1)"; then
            echo "ok    $label (invalidator validate)"
        else
            echo "$output" >&2
            fail "$label: invalidator validate"
        fi
    fi
    configs=$((configs + 1))
done <"$work/configs.tsv"
if [ -z "$invalidator_bin" ]; then
    echo "note  no invalidator binary built: configs checked against the schemas only"
fi

if [ "$failures" -ne 0 ]; then
    echo "k8s: $failures checks failed ($documents documents, $configs configs)" >&2
    exit 1
fi
echo "k8s: $documents documents valid ($configs invalidator configs)"
