#!/usr/bin/env bash
# check-hardening.sh BINARY: checks that an ELF executable was built with the
# hardening CMakeLists.txt asks for. Prints one line per property and exits 1
# naming what is missing, 2 on a usage error, 0 when everything is there.
#
#   stack protector  __stack_chk_fail is imported (-fstack-protector-strong)
#   fortify          a fortified __*_chk function is imported (_FORTIFY_SOURCE)
#   bind now         BIND_NOW, or NOW in FLAGS_1 (-z now: full RELRO)
#   relro            a GNU_RELRO segment (-z relro)
#   pie              ELF type DYN with PIE in FLAGS_1
#   nx stack         a GNU_STACK segment without the execute bit (-z noexecstack)
#   cet              the IBT and SHSTK property note (-fcf-protection); the
#                    linker drops the note when any linked object lacks it,
#                    as the C runtime start files of some distributions do, so
#                    endbr64 at the entry of main is taken as the proof then
#
# Stack clash probes leave no mark in a binary: only the build flags show them.
set -uo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 BINARY" >&2
    exit 2
fi
bin=$1
if [ ! -f "$bin" ] || ! readelf -h "$bin" >/dev/null 2>&1; then
    echo "check-hardening: $bin is not a readable ELF file" >&2
    exit 2
fi

header=$(readelf -hW "$bin")
dynamic=$(readelf -dW "$bin")
segments=$(readelf -lW "$bin")
symbols=$(readelf --dyn-syms -W "$bin")
notes=$(readelf -nW "$bin")

names=$(awk '$7 == "UND" { sub(/@.*/, "", $8); print $8 }' <<<"$symbols")

missing=()
report() { # report NAME OK DETAIL
    if [ "$2" = yes ]; then
        printf '%-16s ok       %s\n' "$1" "$3"
    else
        printf '%-16s MISSING  %s\n' "$1" "$3"
        missing+=("$1")
    fi
}

has() { grep -qE "$1" <<<"$2" && echo yes || echo no; }

report "stack protector" "$(has '^__stack_chk_fail$' "$names")" \
    "__stack_chk_fail imported (-fstack-protector-strong)"

chk=$(grep -E '^__[A-Za-z0-9_]+_chk$' <<<"$names" | sort -u | paste -sd ' ')
report "fortify" "$([ -n "$chk" ] && echo yes || echo no)" \
    "fortified calls (-D_FORTIFY_SOURCE): ${chk:-none}"

report "bind now" "$(has '\(BIND_NOW\)|\(FLAGS\).*BIND_NOW|\(FLAGS_1\).* NOW' "$dynamic")" \
    "symbols bound at start (-z now)"

report "relro" "$(has '^ *GNU_RELRO ' "$segments")" "GNU_RELRO segment (-z relro)"

is_pie=no
if grep -qE 'Type: +DYN ' <<<"$header" && grep -qE '\(FLAGS_1\).* PIE' <<<"$dynamic"; then
    is_pie=yes
fi
report "pie" "$is_pie" "ELF type DYN with FLAGS_1 PIE"

stack=$(grep -E '^ *GNU_STACK ' <<<"$segments" | awk '{print $(NF-1)}')
report "nx stack" "$([ -n "$stack" ] && [[ $stack != *E* ]] && echo yes || echo no)" \
    "GNU_STACK flags ${stack:-absent} (-z noexecstack)"

cet=no
cet_detail="no IBT/SHSTK property and no endbr64 at main (-fcf-protection)"
if grep -qE 'x86 feature:.*IBT' <<<"$notes" && grep -qE 'x86 feature:.*SHSTK' <<<"$notes"; then
    cet=yes
    cet_detail="IBT and SHSTK property note"
elif command -v objdump >/dev/null &&
    objdump -d --no-show-raw-insn --disassemble=main "$bin" 2>/dev/null |
    grep -A1 -E '<main>:$' | grep -qE '^ +[0-9a-f]+:[[:space:]]+endbr64'; then
    cet=yes
    cet_detail="endbr64 at main; no property note (an object linked in, such as the C runtime's start files, lacks it)"
fi
report "cet" "$cet" "$cet_detail"

if [ ${#missing[@]} -gt 0 ]; then
    echo "check-hardening: $bin lacks: ${missing[*]}" >&2
    exit 1
fi
echo "check-hardening: $bin has every hardening property"
