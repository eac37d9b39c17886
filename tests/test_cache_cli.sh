#!/bin/bash
# The compiled-model cache driven from outside through the CLI: the LFU scenario with
# INFERBOOSTER_CACHE_MAX_ENTRIES=3, the byte limit, evict/clear/usage errors, two (and
# four) processes inserting the same model at once, and a kill -9 loop at random moments
# of inserts and evictions followed by `cache verify` (which must then stay clean).
# `cache put` / `cache get` are the test-only subcommands (the artifact is a copy of the
# model), going through the same insert/lookup code as compiled models.
#
# Then the same scenario through real compiles (`compile`, `run`, `bench` of generated
# models), damaged entries rebuilt, and a kill -9 loop over real compiles and evictions.
#
# usage: test_cache_cli.sh PATH/TO/inferbooster [KILLS [REAL_KILLS]]
#   KILLS: kills of `cache put` ($IB_CACHE_KILLS, default 50); REAL_KILLS: kills of real
#   compiles ($IB_CACHE_REAL_KILLS, default 20). The sanitizer build runs 120 + 80.
set -u
if [ $# -lt 1 ] || [ ! -x "$1" ]; then
    echo "usage: $0 PATH/TO/inferbooster [KILLS [REAL_KILLS]]" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
CLI=$1
KILLS=${2:-${IB_CACHE_KILLS:-50}}
REAL_KILLS=${3:-${IB_CACHE_REAL_KILLS:-20}}
PY=/usr/bin/python3
T=$(mktemp -d /tmp/ib_test_cache_cli.XXXXXX)
trap 'rm -rf "$T"' EXIT
export INFERBOOSTER_CACHE_DIR=$T/cache
export INFERBOOSTER_CACHE_MAX_ENTRIES=3
unset INFERBOOSTER_CACHE_MAX_BYTES XDG_CACHE_HOME
ls "$HOME/.cache/inferbooster/entries" 2>/dev/null >"$T/home_before"

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() {
    failed=$((failed + 1))
    echo "FAIL $1"
    [ -s "$T/err" ] && tail -n 5 "$T/err" | sed 's/^/    stderr: /'
    return 0
}
check() { if [ "$2" -eq 0 ]; then ok "$1"; else bad "$1"; fi; }
# run CMD...: stdout -> $T/out, stderr -> $T/err, returns the exit code.
run() { "$@" >"$T/out" 2>"$T/err"; }

for i in 1 2 3 4 5 6 7 8; do
    { printf 'stand-in model %d\n' "$i"; head -c 1000 /dev/urandom; } >"$T/model_$i.onnx"
done
M=$T/model

# ---- the original scenario ----------------------------------------------------------
run "$CLI" cache put "$M"_1.onnx && grep -q '^built ' "$T/out"; check "model_1 first use builds" $?
run "$CLI" cache put "$M"_1.onnx && grep -q '^hit .* freq=2 ' "$T/out"; check "model_1 second use hits (freq 2)" $?
run "$CLI" cache put "$M"_2.onnx && grep -q '^built ' "$T/out"; check "model_2 builds" $?
run "$CLI" cache put "$M"_3.onnx && grep -q '^built ' "$T/out"; check "model_3 builds" $?
run "$CLI" cache get "$M"_1.onnx && grep -q '^hit .* freq=3 ' "$T/out"; check "model_1 hit again (freq 3)" $?
run "$CLI" cache put "$M"_4.onnx && grep -q '^built ' "$T/out"; check "model_4 builds at the threshold" $?
run "$CLI" cache ls --json
"$PY" - "$T/out" <<'EOF'
import json, sys
entries = json.load(open(sys.argv[1]))
names = sorted(e["name"].split("#")[0] for e in entries)
freq = {e["name"].split("#")[0]: e["freq"] for e in entries}
assert names == ["model_1.onnx", "model_3.onnx", "model_4.onnx"], names
assert freq["model_1.onnx"] == 3 and freq["model_3.onnx"] == 1 and freq["model_4.onnx"] == 1, freq
for e in entries:
    assert len(e["key"]) == 64 and e["bytes"] > 1000 and e["target"], e
EOF
check "model_2 evicted; model_1 (freq 3), model_3, model_4 remain" $?
run "$CLI" cache get "$M"_2.onnx && grep -q '^miss ' "$T/out"; check "model_2 is a miss" $?
run "$CLI" cache stats --json
"$PY" -c "
import json,sys; s=json.load(open('$T/out'))
assert (s['entries'], s['hits'], s['misses'], s['evictions'], s['max_entries']) == (3, 2, 5, 1, 3), s" 2>"$T/err"
check "stats: 3 entries, 2 hits, 5 misses, 1 eviction" $?
run "$CLI" cache ls && grep -q 'model_1.onnx#' "$T/out" && grep -q 'FREQ' "$T/out"; check "ls table" $?
run "$CLI" cache stats && grep -q '^evictions  1$' "$T/out"; check "stats table" $?
run "$CLI" cache verify && grep -q '^clean$' "$T/out"; check "verify: clean after the scenario" $?

# ---- evict, clear, usage errors, hostile names ----------------------------------------
key3=$("$CLI" cache get "$M"_3.onnx | awk '{print $2}')
run "$CLI" cache evict "${key3:0:12}" && grep -q "^evicted $key3" "$T/out"; check "evict by unique key prefix" $?
run "$CLI" cache get "$M"_3.onnx && grep -q '^miss ' "$T/out"; check "evicted entry is a miss" $?
run "$CLI" cache evict "$key3"; check "evicting a missing key fails (exit 2)" $(( $? == 2 ? 0 : 1 ))
run "$CLI" cache evict ../../etc; check "evict of a path-like key refused (exit 2)" $(( $? == 2 ? 0 : 1 ))
run "$CLI" cache bogus; check "unknown action (exit 2)" $(( $? == 2 ? 0 : 1 ))
run "$CLI" cache put "$T/nonexistent.onnx"; check "put of a missing model (exit 2)" $(( $? == 2 ? 0 : 1 ))
run "$CLI" cache ls extra; check "stray operand (exit 2)" $(( $? == 2 ? 0 : 1 ))
cp "$M"_5.onnx "$T/we ird#..name\$(x).onnx"
run "$CLI" cache put "$T/we ird#..name\$(x).onnx" && run "$CLI" cache ls --json &&
    "$PY" -c "
import json; e=json.load(open('$T/out'))
assert all('/' not in x['name'] and ' ' not in x['name'] for x in e), e" 2>"$T/err" &&
    [ -z "$(find "$T" -mindepth 1 -newer "$M"_8.onnx -not -path "$T/cache*" -not -name out -not -name err -not -name 'we ird*')" ]
check "hostile model name sanitised, nothing written outside the cache" $?
run "$CLI" cache clear && run "$CLI" cache stats --json && grep -q '"entries": 0' "$T/out"; check "clear empties the cache" $?
run "$CLI" cache put "$M"_1.onnx --cache-dir "$T/other" && [ -d "$T/other/entries" ] &&
    run "$CLI" cache stats --json && grep -q '"entries": 0' "$T/out"
check "--cache-dir overrides INFERBOOSTER_CACHE_DIR" $?

# ---- the byte limit -------------------------------------------------------------------
for i in 1 2 3 4 5; do INFERBOOSTER_CACHE_MAX_BYTES=3200 "$CLI" cache put "$M"_$i.onnx >/dev/null 2>"$T/err"; done
run "$CLI" cache stats --json
"$PY" -c "
import json; s=json.load(open('$T/out'))
assert s['entries'] == 2 and s['bytes'] <= 3200, s" 2>"$T/err"
check "INFERBOOSTER_CACHE_MAX_BYTES keeps the total under the limit" $?
run "$CLI" cache put "$M"_6.onnx --max-bytes 1500 && run "$CLI" cache stats --json && grep -q '"entries": 1' "$T/out"
check "--max-bytes flag" $?
"$CLI" cache clear >/dev/null

# ---- concurrent inserts of the same model ---------------------------------------------
conc_ok=0
for round in 1 2 3; do
    m="$M"_$((round + 5)).onnx
    "$CLI" cache put "$m" --build-delay-ms 300 >"$T/p1" 2>&1 &
    p1=$!
    "$CLI" cache put "$m" --build-delay-ms 300 >"$T/p2" 2>&1 &
    p2=$!
    wait $p1; r1=$?
    wait $p2; r2=$?
    nb=$(cat "$T/p1" "$T/p2" | grep -c '^built ')
    nh=$(cat "$T/p1" "$T/p2" | grep -c '^hit ')
    k1=$(awk '{print $2}' "$T/p1"); k2=$(awk '{print $2}' "$T/p2")
    if [ $r1 -ne 0 ] || [ $r2 -ne 0 ] || [ "$nb" -ne 1 ] || [ "$nh" -ne 1 ] || [ "$k1" != "$k2" ]; then
        conc_ok=1
        cat "$T/p1" "$T/p2" | sed 's/^/    /'
    fi
done
n=$(ls "$INFERBOOSTER_CACHE_DIR/entries" | wc -l)
[ $conc_ok -eq 0 ] && [ "$n" -eq 3 ]; check "two processes insert the same model: one builds, the other hits" $?
pids=()
for j in 1 2 3 4; do "$CLI" cache put "$M"_1.onnx --build-delay-ms 200 >"$T/q$j" 2>&1 & pids+=($!); done
rcs=0
for p in "${pids[@]}"; do wait "$p" || rcs=1; done
nb=$(cat "$T"/q? | grep -c '^built ')
[ $rcs -eq 0 ] && [ "$nb" -eq 1 ] && [ "$(cat "$T"/q? | grep -c '^hit ')" -eq 3 ]
check "four processes, one model: one build, three hits" $?
run "$CLI" cache verify && grep -q '^clean$' "$T/out"; check "verify clean after the concurrent inserts" $?

# ---- kill -9 at random moments of inserts and evictions -----------------------------
# Several models through a 3-entry cache: most puts build and evict. Each is killed at a
# random moment within its measured run time (so a slow sanitizer build is hit as often
# mid-operation as a release build): some mid-build, some mid-publish or mid-eviction,
# some after they finished.
now_ms() { echo $(($(date +%s%N) / 1000000)); }
t0=$(now_ms)
for i in 1 2 3 4; do "$CLI" cache put "$M"_$((i + 4)).onnx --build-delay-ms 10 >/dev/null 2>&1; done
span=$(( ($(now_ms) - t0) / 4 + 10 ))
killed=0
interrupted=0
for ((k = 0; k < KILLS; k++)); do
    m="$M"_$((RANDOM % 8 + 1)).onnx
    ls -A "$INFERBOOSTER_CACHE_DIR/tmp" >"$T/tmp_before"
    "$CLI" cache put "$m" --build-delay-ms $((RANDOM % 20)) >/dev/null 2>&1 &
    victim=$!
    # a second, unkilled process keeps the cache busy at the same time
    if ((k % 5 == 0)); then "$CLI" cache put "$M"_$((RANDOM % 8 + 1)).onnx >/dev/null 2>"$T/bg" & bg=$!; else bg=; fi
    ms=$((RANDOM % span))
    sleep "$((ms / 1000)).$(printf %03d $((ms % 1000)))"
    kill -9 "$victim" 2>/dev/null && killed=$((killed + 1))
    wait "$victim" 2>/dev/null
    if [ -n "$bg" ]; then wait "$bg" || { echo "    background put failed:"; cat "$T/bg"; }; fi
    # evidence that kills land mid-operation: a new build or deletion left in tmp/
    ls -A "$INFERBOOSTER_CACHE_DIR/tmp" >"$T/tmp_after"
    [ -n "$(comm -13 "$T/tmp_before" "$T/tmp_after")" ] && interrupted=$((interrupted + 1))
done
echo "    $KILLS kill attempts (window ${span} ms), $killed killed while running, $interrupted left a build or deletion behind"
run "$CLI" cache verify; rc1=$?
cp "$T/out" "$T/verify1"
sed 's/^/    first verify: /' "$T/verify1" | head -2
run "$CLI" cache verify && grep -q '^clean$' "$T/out"; rc2=$?
[ $rc1 -eq 0 ] && [ $rc2 -eq 0 ]; check "kill -9 loop: verify repairs, a second verify is clean" $?
run "$CLI" cache ls --json
"$PY" - "$T/out" "$INFERBOOSTER_CACHE_DIR" <<'EOF'
import json, os, sys
entries = json.load(open(sys.argv[1]))
root = sys.argv[2]
assert len(entries) <= 3, len(entries)
dirs = sorted(os.listdir(os.path.join(root, "entries")))
assert dirs == sorted(e["key"] for e in entries), (dirs, entries)
assert os.listdir(os.path.join(root, "tmp")) == [], os.listdir(os.path.join(root, "tmp"))
EOF
check "after the kills: index and entry directories agree, no temporaries" $?
all_ok=0
for i in 1 2 3 4 5 6 7 8; do
    "$CLI" cache put "$M"_$i.onnx >"$T/out" 2>"$T/err" || all_ok=1
    "$CLI" cache get "$M"_$i.onnx >"$T/out" 2>"$T/err" && grep -q '^hit ' "$T/out" || all_ok=1
done
run "$CLI" cache verify && grep -q '^clean$' "$T/out" || all_ok=1
check "after the kills every model inserts and hits again" $all_ok

# ---- the scenario through real compiles ------------------------------------------------
# Four small models (the example MLP with four different doc strings) compiled by
# `compile`, run by `run` and timed by `bench`, all through the cache with its 3-entry
# limit; then frequencies across an index rebuild, --no-cache, and damaged entries.
export INFERBOOSTER_CACHE_DIR=$T/real
MLP=$(cd "$(dirname "$0")/.." && pwd)/examples/model_repository/mlp/1/model.onnx
"$PY" - "$MLP" "$T" <<'PYEOF' 2>"$T/err"
import onnx, sys
for i in range(1, 5):
    m = onnx.load(sys.argv[1])
    m.doc_string = "cache scenario model %d" % i
    onnx.save(m, "%s/real_%d.onnx" % (sys.argv[2], i))
PYEOF
check "four small models generated" $?
R=$T/real
# compiled N STATE: `compile real_N --batch 1` succeeds, its JSON says cache STATE.
compiled() {
    run "$CLI" compile "$R"_$1.onnx --batch 1 -o "$T/art_$1" --json &&
        grep -q "\"cache\": \"$2\"" "$T/out" && [ -f "$T/art_$1/model.so" ]
}
key_of() { # key_of NAME_PREFIX: the key of the entry listed under that name
    "$CLI" cache ls --json | "$PY" -c "
import json, sys
print([e['key'] for e in json.load(sys.stdin) if e['name'].startswith('$1')][0])"
}
compiled 1 miss; check "real model_1 first compile: a miss, compiled into the cache" $?
run "$CLI" run "$R"_1.onnx && grep -q '^executor: compiled' "$T/out"
check "real model_1 run: a hit on the batch-1 entry (compiled executor, freq 2)" $?
compiled 2 miss; check "real model_2 compiles" $?
compiled 3 miss; check "real model_3 compiles" $?
run "$CLI" bench "$R"_1.onnx --runs 2 --warmup 0 --json && grep -q '"executor": *"compiled"' "$T/out"
check "real model_1 bench: a hit again (freq 3)" $?
compiled 4 miss; check "real model_4 compiles at the threshold" $?
check_real_ls() { # check_real_ls 'PYTHON DICT': names -> frequencies in `cache ls --json`
    "$CLI" cache ls --json >"$T/out" 2>"$T/err" && "$PY" -c "
import json
freq = {e['name'].split('#')[0]: e['freq'] for e in json.load(open('$T/out'))}
assert freq == $1, freq" 2>>"$T/err"
}
check_real_ls "{'real_1.onnx': 3, 'real_3.onnx': 1, 'real_4.onnx': 1}"
check "real compiles: model_2 evicted; model_1 (freq 3), model_3, model_4 remain" $?
compiled 1 hit && cmp -s "$T/art_1/model.so" "$INFERBOOSTER_CACHE_DIR/entries/$(key_of real_1)/model.so"
check "a hit copies the entry's artifact out (compile -o), freq 4" $?
# Frequencies live beside the index too: an index lost or damaged is rebuilt with them.
echo "garbage" >"$INFERBOOSTER_CACHE_DIR/index"
check_real_ls "{'real_1.onnx': 4, 'real_3.onnx': 1, 'real_4.onnx': 1}"
check "frequencies survive an index rebuilt from the entry directories" $?
compiled 2 miss && check_real_ls "{'real_1.onnx': 4, 'real_4.onnx': 1, 'real_2.onnx': 1}"
check "after the rebuild LFU still evicts the least used (model_3), not model_1" $?
run "$CLI" run "$R"_3.onnx --no-cache --compile && grep -q '^executor: compiled' "$T/out" &&
    check_real_ls "{'real_1.onnx': 4, 'real_4.onnx': 1, 'real_2.onnx': 1}"
check "--no-cache compiles without touching the cache" $?
INFERBOOSTER_NO_CACHE=1 run "$CLI" compile "$R"_3.onnx --batch 1 -o "$T/art_nc" --json &&
    grep -q '"cache": "off"' "$T/out"
check "INFERBOOSTER_NO_CACHE=1 bypasses the cache" $?

# A damaged entry is detected, dropped and rebuilt through the real compile path.
"$CLI" run "$R"_4.onnx --no-cache >"$T/want" 2>&1
E4=$INFERBOOSTER_CACHE_DIR/entries/$(key_of real_4)
"$PY" - "$E4/weights.bin" <<'PYEOF'
import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[len(b) // 2] ^= 0x55; open(p, "wb").write(b)
PYEOF
run "$CLI" run "$R"_4.onnx --compile && grep -q '^executor: compiled' "$T/out" &&
    diff <(grep -v executor "$T/want") <(grep -v executor "$T/out") >/dev/null &&
    [ "$(key_of real_4)" = "$(basename "$E4")" ] && "$CLI" cache verify | grep -q '^clean$'
check "flipped weights.bin byte: entry dropped and rebuilt, the output is right" $?
"$PY" - "$E4/model.so" <<'PYEOF'
import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[64:4096] = bytes(4096 - 64); open(p, "wb").write(b)
PYEOF
run "$CLI" compile "$R"_4.onnx --batch 1 -o "$T/art_4b" --json && grep -q '"cache": "miss"' "$T/out" &&
    "$CLI" run "$T/art_4b" >"$T/out" 2>"$T/err" &&
    diff <(grep -v executor "$T/want") <(grep -v executor "$T/out") >/dev/null
check "zeroed bytes in model.so: caught by the checksum on the hit, recompiled, runs" $?
head -c 100 "$E4/model.so" >"$T/short.so" && cat "$T/short.so" >"$E4/model.so"
run "$CLI" compile "$R"_4.onnx --batch 1 -o "$T/art_4c" --json && grep -q '"cache": "miss"' "$T/out"
check "truncated model.so: dropped and recompiled" $?
run "$CLI" cache verify && grep -q '^clean$' "$T/out"; check "verify clean after the real compiles" $?
# Two processes compiling the same model at once: one compiles, the other waits and hits.
"$CLI" compile "$R"_3.onnx --batch 3 -o "$T/art_c1" --json >"$T/c1" 2>&1 &
c1=$!
"$CLI" compile "$R"_3.onnx --batch 3 -o "$T/art_c2" --json >"$T/c2" 2>&1 &
c2=$!
wait $c1; r1=$?
wait $c2; r2=$?
[ $r1 -eq 0 ] && [ $r2 -eq 0 ] && [ "$(cat "$T/c1" "$T/c2" | grep -c '"cache": "miss"')" -eq 1 ] &&
    [ "$(cat "$T/c1" "$T/c2" | grep -c '"cache": "hit"')" -eq 1 ] &&
    cmp -s "$T/art_c1/model.so" "$T/art_c2/model.so" &&
    [ "$("$CLI" cache ls --json | "$PY" -c "
import json, sys
print(sum(e['name'].startswith('real_3.onnx#') for e in json.load(sys.stdin)))")" = 1 ]
check "two processes compile the same model at once: one entry, both succeed" $?
# Cross-compiled artifacts are entries too (keyed by the cross target and its compiler).
elf_machine() { "$PY" -c "import sys, struct; print(struct.unpack('<H', open(sys.argv[1], 'rb').read()[18:20])[0])" "$1"; }
run "$CLI" compile "$R"_2.onnx --target aarch64 --batch 1 -o "$T/art_arm1" --json &&
    grep -q '"cache": "miss"' "$T/out" &&
    run "$CLI" compile "$R"_2.onnx --target aarch64 --batch 1 -o "$T/art_arm2" --json &&
    grep -q '"cache": "hit"' "$T/out" && cmp -s "$T/art_arm1/model.so" "$T/art_arm2/model.so" &&
    [ "$(elf_machine "$T/art_arm2/model.so")" = 183 ] &&
    arm_key=$(grep -o '"key": "[0-9a-f]*"' "$T/out") &&
    run "$CLI" compile "$R"_2.onnx --batch 1 -o "$T/art_x86" --json &&
    [ "$(grep -o '"key": "[0-9a-f]*"' "$T/out")" != "$arm_key" ] &&
    [ "$(elf_machine "$T/art_x86/model.so")" = 62 ]
check "aarch64 cross-compile: a miss, then a hit with the same module; the x86 entry stays apart" $?

# ---- kill -9 at random moments of real compiles and evictions --------------------------
# The four models at batch 1 and 2 (eight keys) through the 3-entry cache: most compiles
# miss, run the C compiler and evict. Each is killed, with its compiler children (its
# own process group), at a random moment within a miss's measured time.
"$CLI" cache clear >/dev/null
# the compilers' own temporary files must not outlive the kills in $TMPDIR (gcc leaves its
# ccXXXXXX.s there when it is killed)
mkdir -p "$T/tmpdir"
export TMPDIR=$T/tmpdir
t0=$(now_ms)
for i in 1 2; do "$CLI" compile "$R"_$i.onnx --batch 2 -o "$T/art_k" >/dev/null 2>&1; done
span=$(( ($(now_ms) - t0) / 2 + 10 ))
killed=0
interrupted=0
for ((k = 0; k < REAL_KILLS; k++)); do
    ls -A "$INFERBOOSTER_CACHE_DIR/tmp" >"$T/tmp_before"
    setsid "$CLI" compile "$R"_$((RANDOM % 4 + 1)).onnx --batch $((RANDOM % 2 + 1)) \
        -o "$T/art_k$k" >/dev/null 2>&1 &
    victim=$!
    if ((k % 5 == 0)); then
        "$CLI" run "$R"_$((RANDOM % 4 + 1)).onnx --compile >/dev/null 2>"$T/bg" & bg=$!
    else bg=; fi
    ms=$((RANDOM % span))
    sleep "$((ms / 1000)).$(printf %03d $((ms % 1000)))"
    kill -9 -- -"$victim" 2>/dev/null && killed=$((killed + 1))
    wait "$victim" 2>/dev/null
    if [ -n "$bg" ]; then wait "$bg" || { echo "    background run failed:"; cat "$T/bg"; }; fi
    ls -A "$INFERBOOSTER_CACHE_DIR/tmp" >"$T/tmp_after"
    [ -n "$(comm -13 "$T/tmp_before" "$T/tmp_after")" ] && interrupted=$((interrupted + 1))
    rm -rf "$T"/art_k$k "$T"/art_k$k.tmp-*
done
echo "    $REAL_KILLS kill attempts on real compiles (window ${span} ms), $killed killed while running, $interrupted left a build or deletion behind"
run "$CLI" cache verify; rc1=$?
sed 's/^/    first verify: /' "$T/out" | head -1
run "$CLI" cache verify && grep -q '^clean$' "$T/out"; rc2=$?
[ $rc1 -eq 0 ] || echo "    first verify exited $rc1"
[ $rc2 -eq 0 ] || sed 's/^/    second verify: /' "$T/out" "$T/err" | head -5
[ $rc1 -eq 0 ] && [ $rc2 -eq 0 ]; check "kill -9 loop on real compiles: verify repairs, a second verify is clean" $?
all_ok=0
for i in 1 2 3 4; do
    "$CLI" run "$R"_$i.onnx --compile >"$T/out" 2>"$T/err" && grep -q '^executor: compiled' "$T/out" || all_ok=1
done
run "$CLI" cache verify && grep -q '^clean$' "$T/out" || all_ok=1
[ "$(ls "$INFERBOOSTER_CACHE_DIR/entries" | wc -l)" -le 3 ] || all_ok=1
check "after the kills every model compiles and runs from the cache, within the limit" $all_ok
left=$(find "$TMPDIR" "$INFERBOOSTER_CACHE_DIR" -name 'cc*' -type f | head -3)
[ -z "$left" ]; check "no compiler temporary file left by the kills${left:+: $left}" $?
unset TMPDIR

ls "$HOME/.cache/inferbooster/entries" 2>/dev/null >"$T/home_after"
cmp -s "$T/home_before" "$T/home_after"; check "nothing written into ~/.cache/inferbooster" $?

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
