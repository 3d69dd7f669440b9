#!/usr/bin/env bash
# Checks the JSON Schemas in schemas/: each is a valid draft 2020-12 schema, every
# example validates against its schema, the repository's own example files and
# the golden explain outputs validate, and every deliberately invalid example is
# rejected.
#
# Examples are named <schema>.<case>.json|yaml and validate against
# schemas/<schema>.schema.json. Files under schemas/examples/invalid/ must fail.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v check-jsonschema >/dev/null 2>&1; then
    python3 -m pip install --quiet check-jsonschema
fi

schema_dir="$(pwd)/schemas"
checked=0
failures=0

# Validates $2.. against schemas/$1.schema.json. Relative $refs between the
# schemas (rules.schema.json#/$defs/rule, ...) resolve to the files next to it
# instead of being fetched from the published $id.
validate() {
    local schema="$1"
    shift
    check-jsonschema --base-uri "file://$schema_dir/$schema.schema.json" \
        --schemafile "$schema_dir/$schema.schema.json" "$@"
}

schema_for() {
    local name
    name="$(basename "$1")"
    echo "${name%%.*}"
}

echo "== metaschema"
check-jsonschema --check-metaschema schemas/*.schema.json
checked=$((checked + $(ls schemas/*.schema.json | wc -l)))

echo "== examples"
for example in schemas/examples/*.json schemas/examples/*.yaml; do
    [ -e "$example" ] || continue
    schema="$(schema_for "$example")"
    if [ ! -f "schemas/$schema.schema.json" ]; then
        echo "$example: no schema named schemas/$schema.schema.json" >&2
        failures=$((failures + 1))
        continue
    fi
    if validate "$schema" "$example" >/dev/null; then
        echo "ok    $example ($schema)"
    else
        validate "$schema" "$example" || true
        echo "FAIL  $example ($schema)" >&2
        failures=$((failures + 1))
    fi
    checked=$((checked + 1))
done

echo "== repository examples and golden plans"
for pair in rules:examples/rules.yaml config:examples/invalidator.yaml \
    rules:Tests/InvalidatorCoreTests/Golden/rules.yaml; do
    schema="${pair%%:*}"
    file="${pair#*:}"
    if validate "$schema" "$file" >/dev/null; then
        echo "ok    $file ($schema)"
    else
        validate "$schema" "$file" || true
        echo "FAIL  $file ($schema)" >&2
        failures=$((failures + 1))
    fi
    checked=$((checked + 1))
done
for plan in Tests/InvalidatorCoreTests/Golden/*.plan.json; do
    if validate explain "$plan" >/dev/null; then
        echo "ok    $plan (explain)"
    else
        validate explain "$plan" || true
        echo "FAIL  $plan (explain)" >&2
        failures=$((failures + 1))
    fi
    checked=$((checked + 1))
done
for event in Tests/InvalidatorCoreTests/Golden/*.event.json; do
    # The golden events are native events except the Debezium one.
    case "$(basename "$event")" in
        debezium-*) schema=debezium-event ;;
        *) schema=change-event ;;
    esac
    if validate "$schema" "$event" >/dev/null; then
        echo "ok    $event ($schema)"
    else
        validate "$schema" "$event" || true
        echo "FAIL  $event ($schema)" >&2
        failures=$((failures + 1))
    fi
    checked=$((checked + 1))
done

echo "== invalid examples (each must be rejected)"
invalid_count=0
for example in schemas/examples/invalid/*.json schemas/examples/invalid/*.yaml; do
    [ -e "$example" ] || continue
    invalid_count=$((invalid_count + 1))
    schema="$(schema_for "$example")"
    # Rejected for a validation error, not because the schema failed to load.
    if output="$(validate "$schema" "$example" 2>&1)"; then
        echo "FAIL  $example passed $schema but must be rejected" >&2
        failures=$((failures + 1))
    elif grep -q "Schema validation errors were encountered" <<<"$output"; then
        echo "ok    $example rejected ($schema)"
    else
        echo "$output" >&2
        echo "FAIL  $example: $schema could not be checked" >&2
        failures=$((failures + 1))
    fi
    checked=$((checked + 1))
done
if [ "$invalid_count" -eq 0 ]; then
    echo "FAIL  no invalid examples under schemas/examples/invalid/" >&2
    failures=$((failures + 1))
fi

if [ "$failures" -ne 0 ]; then
    echo "schemas: $failures of $checked checks failed" >&2
    exit 1
fi
echo "schemas: $checked files valid"
