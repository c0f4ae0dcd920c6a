#!/usr/bin/env bash
# Rejects unbounded string calls and formatting drift in src/ and tests/.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
if grep -rnE '\b(strcpy|strcat|sprintf|vsprintf|atoi|atol|strtok|gets)[[:space:]]*\(' src tests/unit tests/fuzz; then
    echo "lint: use bounded forms (snprintf, strtol with checks, strtok_r is also refused)" >&2
    status=1
fi
files=$(git ls-files 'src/*.[ch]' 'tests/unit/*.[ch]' 'tests/fuzz/*.[ch]' 2>/dev/null || true)
if [ -n "$files" ] && command -v clang-format >/dev/null; then
    if ! clang-format --dry-run --Werror $files >/dev/null 2>&1; then
        clang-format --dry-run --Werror $files 2>&1 | head -20 >&2
        echo "lint: formatting differs; run 'make format'" >&2
        status=1
    fi
fi
exit $status
