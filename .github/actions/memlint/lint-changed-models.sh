#!/usr/bin/env bash
# The memlint GitHub Action's work (action.yml at the repository root runs it; docs/ci.md):
# lint the ONNX models a pull request adds or changes, with the gate read from the base branch,
# write the Markdown report to the job summary (and a pull-request comment when asked), SARIF
# for code scanning, and GitHub annotations. It always exits 0 when it could do its job and
# leaves the gate's verdict in the step output `exit-code` (0 pass, 1 findings at or above
# fail-on, 2 memlint could not lint a model), so that the SARIF upload and the comment run
# before the action's last step fails the job.
#
# Inputs (environment; action.yml maps the action's inputs onto them):
#   MEMLINT_BASE         base commit or ref to diff against (default: the pull request's base
#                        commit from $GITHUB_EVENT_PATH, else origin/$GITHUB_BASE_REF)
#   MEMLINT_PATHS        git pathspecs of the models to consider, space-separated (default *.onnx)
#   MEMLINT_HW           device (default: the config's hw, else a100)
#   MEMLINT_CONFIG       config file, read as it is on the base branch (default memlint.toml;
#                        absent there: no config at all, --isolated)
#   MEMLINT_BASELINE     baseline file, read as it is on the base branch (optional)
#   MEMLINT_FAIL_ON      error | warning | info | never (default: the config's, else warning)
#   MEMLINT_ARGS         more memlint flags, split on spaces (e.g. "--dim batch_size=1")
#   MEMLINT_SARIF        true: write SARIF for upload (default true)
#   MEMLINT_ANNOTATIONS  true: GitHub annotations on the changed files (default true)
#   MEMLINT_COMMENT      true: post the report as a pull-request comment, updated in place on
#                        later pushes (needs GH_TOKEN and the gh CLI; default false)
#   MEMLINT_CMD          how to run memlint (default: memlint)
# GitHub's own: GITHUB_EVENT_PATH, GITHUB_BASE_REF, GITHUB_STEP_SUMMARY, GITHUB_OUTPUT,
# GITHUB_REPOSITORY, RUNNER_TEMP.
set -euo pipefail

read -r -a memlint_cmd <<< "${MEMLINT_CMD:-memlint}"
read -r -a pathspecs <<< "${MEMLINT_PATHS:-*.onnx}"
read -r -a extra_args <<< "${MEMLINT_ARGS:-}"
work="${RUNNER_TEMP:-${TMPDIR:-/tmp}}/memlint-action"
rm -rf "$work" && mkdir -p "$work/base"
summary="${GITHUB_STEP_SUMMARY:-$work/summary.md}"
outputs="${GITHUB_OUTPUT:-$work/outputs}"
marker="<!-- memlint-action -->"

output() { printf '%s=%s\n' "$1" "$2" >> "$outputs"; }
note() { printf 'memlint-action: %s\n' "$*" >&2; }
event_field() {  # a field of the pull request's event payload, "" when absent
    [ -n "${GITHUB_EVENT_PATH:-}" ] && [ -f "$GITHUB_EVENT_PATH" ] || return 0
    python3 - "$GITHUB_EVENT_PATH" "$1" <<'PY'
import json, sys
value = json.load(open(sys.argv[1], encoding="utf-8"))
for key in sys.argv[2].split("."):
    value = value.get(key) if isinstance(value, dict) else None
print("" if value is None else value)
PY
}
indented() { sed 's/^/    /'; }  # untrusted text as a Markdown code block it cannot leave

# --- the base commit, fetched when the checkout lacks it (actions/checkout is shallow) ---------
base="${MEMLINT_BASE:-}"
[ -n "$base" ] || base="$(event_field pull_request.base.sha)"
if [ -z "$base" ] && [ -n "${GITHUB_BASE_REF:-}" ]; then
    base="origin/$GITHUB_BASE_REF"
    git rev-parse --verify -q "$base^{commit}" >/dev/null \
        || git fetch -q --no-tags --depth=1 origin "$GITHUB_BASE_REF:refs/remotes/$base" || true
fi
if [ -z "$base" ]; then
    note "no base to compare with: run it on pull_request events, or set the base input"
    exit 2
fi
if ! git rev-parse --verify -q "$base^{commit}" >/dev/null; then
    git fetch -q --no-tags --depth=1 origin "$base" || true
fi
if ! git rev-parse --verify -q "$base^{commit}" >/dev/null; then
    note "the base commit $base is not in the checkout and cannot be fetched"
    exit 2
fi

# --- the models the pull request adds or changes (deleted ones are gone) ----------------------
mapfile -t models < <(git diff --name-only --diff-filter=ACMR --no-renames "$base" HEAD \
    -- "${pathspecs[@]}" | while IFS= read -r path; do [ -f "$path" ] && printf '%s\n' "$path"; done)
output count "${#models[@]}"
{
    echo "models<<MEMLINT_EOF"
    printf '%s\n' "${models[@]}"
    echo "MEMLINT_EOF"
} >> "$outputs"
if [ "${#models[@]}" -eq 0 ]; then
    echo "### memlint: no model changed in this pull request (${pathspecs[*]})" >> "$summary"
    output exit-code 0
    output markdown ""
    output sarif ""
    exit 0
fi

# --- the gate, as the base branch has it: a pull request cannot loosen it ---------------------
gate=(--isolated)
config="${MEMLINT_CONFIG:-memlint.toml}"
if git cat-file -e "$base:$config" 2>/dev/null; then
    mkdir -p "$work/base/$(dirname "$config")"
    git show "$base:$config" > "$work/base/$config"
    gate=(--config "$work/base/$config")
    # a baseline the config names, relative to the config's folder, also as on the base branch
    named="$(python3 - "$work/base/$config" <<'PY'
import sys
try:
    import tomllib
except ImportError:  # Python < 3.11: memlint depends on tomli there
    import tomli as tomllib
with open(sys.argv[1], "rb") as f:
    table = tomllib.load(f)
if sys.argv[1].endswith("pyproject.toml"):
    table = table.get("tool", {}).get("memlint", {})
print(table.get("baseline", "") if isinstance(table.get("baseline", ""), str) else "")
PY
)"
    if [ -n "$named" ]; then
        relative="$(dirname "$config")/$named"
        mkdir -p "$work/base/$(dirname "$relative")"
        git show "$base:$relative" > "$work/base/$relative" 2>/dev/null || rm -f "$work/base/$relative"
    fi
fi
if [ -n "${MEMLINT_BASELINE:-}" ]; then
    if git cat-file -e "$base:$MEMLINT_BASELINE" 2>/dev/null; then
        mkdir -p "$work/base/$(dirname "$MEMLINT_BASELINE")"
        git show "$base:$MEMLINT_BASELINE" > "$work/base/$MEMLINT_BASELINE"
        gate+=(--baseline "$work/base/$MEMLINT_BASELINE")
    else
        note "baseline $MEMLINT_BASELINE is not on the base branch: every finding counts as new"
    fi
fi
common=("${models[@]}" "${gate[@]}" "${extra_args[@]}")
[ -z "${MEMLINT_HW:-}" ] || common+=(--hw "$MEMLINT_HW")
fail_on=()
[ -z "${MEMLINT_FAIL_ON:-}" ] || fail_on=(--fail-on "$MEMLINT_FAIL_ON")

# --- lint: the Markdown run is the gate; SARIF and annotations never fail --------------------
markdown="$work/memlint.md"
status=0
"${memlint_cmd[@]}" "${common[@]}" "${fail_on[@]}" --format markdown -o "$markdown" 2> "$work/stderr.txt" || status=$?
cat "$work/stderr.txt" >&2
output exit-code "$status"
output markdown "$markdown"
sarif=""
if [ "${MEMLINT_SARIF:-true}" = true ]; then
    sarif="$work/memlint.sarif"
    "${memlint_cmd[@]}" "${common[@]}" --fail-on never --format sarif -o "$sarif" 2>/dev/null \
        || [ -s "$sarif" ] || sarif=""
fi
output sarif "$sarif"
if [ "${MEMLINT_ANNOTATIONS:-true}" = true ]; then
    "${memlint_cmd[@]}" "${common[@]}" --fail-on never --format github 2>/dev/null || true
fi

# --- the report: job summary, and the pull-request comment -----------------------------------
verdict=(pass "findings at or above ${MEMLINT_FAIL_ON:-the configured fail-on}"
         "memlint could not lint every model")
report="$work/comment.md"
{
    echo "$marker"
    echo "## memlint: ${#models[@]} changed model(s): ${verdict[$status]:-exit $status}"
    echo
    if [ -s "$work/stderr.txt" ] && [ "$status" -ne 0 ]; then
        echo "memlint said:"
        echo
        indented < "$work/stderr.txt"
        echo
    fi
    if [ -s "$markdown" ]; then cat "$markdown"; fi
} > "$report"
cat "$report" >> "$summary"
if [ "${MEMLINT_COMMENT:-false}" = true ]; then
    number="$(event_field pull_request.number)"
    if [ -z "$number" ] || [ -z "${GITHUB_REPOSITORY:-}" ]; then
        note "no pull request to comment on"
    else
        limit=60000  # GitHub refuses comments over 65536 characters
        if [ "$(wc -c < "$report")" -gt "$limit" ]; then
            head -c "$limit" "$report" > "$work/cut.md"
            printf '\n\n*(cut: the whole report is in the job summary)*\n' >> "$work/cut.md"
            report="$work/cut.md"
        fi
        comments="repos/$GITHUB_REPOSITORY/issues/$number/comments"
        existing="$(gh api --paginate "$comments" \
            --jq ".[] | select(.body | startswith(\"$marker\")) | .id" | head -n 1)" || existing=""
        if [ -n "$existing" ]; then
            gh api -X PATCH "repos/$GITHUB_REPOSITORY/issues/comments/$existing" \
                -F "body=@$report" >/dev/null || note "could not update the comment"
        else
            gh api -X POST "$comments" -F "body=@$report" >/dev/null \
                || note "could not comment (does the job have pull-requests: write?)"
        fi
    fi
fi
exit 0
