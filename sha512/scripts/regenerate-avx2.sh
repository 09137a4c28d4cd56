#!/usr/bin/env bash
# Regenerates src/sha512_avx2.S, OpenSSL's AVX2 + BMI2 SHA-512 block function, from an AWS-LC
# checkout whose path is the argument. It downloads nothing: pass a checkout you have, e.g. the
# copy aws-lc-sys vendors in cargo's registry:
#
#   sha512/scripts/regenerate-avx2.sh ~/.cargo/registry/src/*/aws-lc-sys-0.47.0/aws-lc
#
# What it does: AWS-LC's crypto/fipsmodule/sha/asm/sha512-x86_64.pl (OpenSSL's CRYPTOGAMS code)
# generates with `$avx = 1` (AWS-LC ships only the AVX variant, since the AVX2 one's CFI
# annotations are imprecise while it moves the stack; nothing unwinds through it here). This
# runs a copy with `$avx = 2` through perlasm (`perl sha512-x86_64.pl elf`), keeps the constant
# table and `sha512_block_data_order_avx2` alone (dropping the other variants and the C
# preprocessor lines), renames them `tooltool_sha512_k512` and `tooltool_sha512_block_avx2`
# (hidden), and writes them under the header below. Needs perl.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 AWS-LC-CHECKOUT" >&2; exit 2; }
src=$1
pl="$src/crypto/fipsmodule/sha/asm/sha512-x86_64.pl"
xlate="$src/crypto/perlasm/x86_64-xlate.pl"
[ -f "$pl" ] && [ -f "$xlate" ] || { echo "$src: no AWS-LC checkout ($pl, $xlate)" >&2; exit 1; }
out="$(cd "$(dirname "$0")/.." && pwd)/src/sha512_avx2.S"
version=$(sed -n 's/.*AWSLC_VERSION_NUMBER_STRING "\([^"]*\)".*/\1/p' "$src/include/openssl/base.h" 2>/dev/null | head -n 1)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The generator finds x86_64-xlate.pl next to itself: give the copy its own.
cp "$xlate" "$tmp/x86_64-xlate.pl"
grep -q '^\$avx = 1;$' "$pl" || { echo "$pl: no '\$avx = 1;' line to change" >&2; exit 1; }
sed 's/^\$avx = 1;$/$avx = 2;/' "$pl" >"$tmp/sha512-x86_64.pl"
perl "$tmp/sha512-x86_64.pl" elf "$tmp/sha512-full.S"  # the name says 512: the script also makes SHA-256

vendored=""
case $(cd "$src" && pwd) in
    */aws-lc-sys-*/aws-lc) vendored=" (as vendored by aws-lc-sys $(basename "$(dirname "$(cd "$src" && pwd)")" | sed 's/^aws-lc-sys-//'))" ;;
esac

body() {
    # The constant table, in .rodata: from its label to the .text that follows it.
    echo ".section	.rodata"
    echo ".align	64"
    echo ".type	K512,@object"
    awk '/^K512:/{on=1} on && /^\.text/{exit} on{print}' "$tmp/sha512-full.S"
    echo ".size	K512,.-K512"
    echo ".text"
    # The AVX2 function: from its .type line to the end of its CFI procedure.
    echo ".globl	sha512_block_data_order_avx2"
    echo ".hidden	sha512_block_data_order_avx2"
    awk '/^\.type[ \t]+sha512_block_data_order_avx2,/{on=1} on{print} on && /^\.cfi_endproc/{exit}' "$tmp/sha512-full.S"
}

{
    cat <<HEADER
# SHA-512 block function for x86_64 CPUs with AVX2 and BMI1/BMI2: \`sha512_block_data_order_avx2\`
# of AWS-LC's crypto/fipsmodule/sha/asm/sha512-x86_64.pl (OpenSSL's CRYPTOGAMS code, by Andy
# Polyakov; AWS-LC ${version:-of unknown version}${vendored}, Apache-2.0 / ISC / OpenSSL licences),
# generated with \`\$avx = 2\` by \`perl sha512-x86_64.pl elf\`. AWS-LC ships only the AVX variant
# because this one's CFI (unwind) annotations are imprecise while it moves the stack; nothing
# unwinds through it here. Changes: the symbols are renamed (tooltool_*, hidden), the constant
# table is kept alone, the other variants and the C preprocessor lines are dropped.
# Regenerate with sha512/scripts/regenerate-avx2.sh AWS-LC-CHECKOUT.
#
# void tooltool_sha512_block_avx2(uint64_t state[8], const uint8_t *data, size_t blocks);
HEADER
    body | grep -v '^#if\|^#endif\|^#include\|^#else\|^#define' \
        | sed -e 's/sha512_block_data_order_avx2/tooltool_sha512_block_avx2/g' -e 's/\bK512\b/tooltool_sha512_k512/g'
} >"$out"
echo "wrote $out"
