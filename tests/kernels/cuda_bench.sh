#!/usr/bin/env bash
# cuda_bench.sh — the GPU work of the CUDA backend, in steps that each fit one `device` call
# (600 s). Not a ctest test (its name does not start with test_). Steps:
#   pack      (on the build machine, no GPU needed) build with CUDA, then copy the CUDA test
#             programs, the benchmark and the shared models they read into .gpu-carry/ (ignored
#             by git; ~50 MiB), which a `device` call carries: carry [".gpu-carry"].
#   tests     (on the GPU machine) run the three test_kern_cuda_* programs against .gpu-carry/.
#   sanitize  (GPU) the kernel tests under compute-sanitizer memcheck, racecheck and synccheck.
#   bench     (GPU) the benchmark tables (cuda_bench.cu); also written to $OUT/bench.md.
#   generate  (GPU) claq generate on two real models, --device cuda then cpu: speed and copies.
#   step [L]  (GPU) the device-resident decode step end to end: a synthetic LLaMA-7B-shaped model
#             of L decoder layers (default 4) made on the GPU machine's CPUs, packed at 2.1, 3 and
#             4 bits, greedy-decoded with claq generate --device cuda: tok/s and the bytes a
#             decode step copies each way (ms/token per layer x 32 estimates the whole model);
#             then a long prompt at 3 bits with and without the tensor-core GEMM (prefill tok/s).
#   ncu       (GPU, Nsight Compute) profile of the CLAQ GEMV, reduction and dequantization.
#   sass      (anywhere with cuobjdump) which architectures the library holds and the
#             instruction mix of the GEMV kernels.
# Example session: bash tests/kernels/cuda_bench.sh pack   (here), then device run with
#   command "bash tests/kernels/cuda_bench.sh tests && bash tests/kernels/cuda_bench.sh sanitize"
#   and carry [".gpu-carry"], then another call for "bash tests/kernels/cuda_bench.sh bench".
# Binaries depend only on libc, CUDA 13's libcudart/libcublas (present on the GPU image) and
# libclaq_cuda.so, which travels beside them in .gpu-carry/bin.
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${CLAQ_CUDA_BUILD:-$SRC/build-cuda}"
CARRY="$SRC/.gpu-carry"
OUTDIR="${OUT:-$CARRY/out}"
step="${1:-}"
if [ "$step" != pack ] && [ -f "$CARRY/lib.tar.xz" ] && [ ! -d "$CARRY/lib" ]; then
    tar -C "$CARRY" -xJf "$CARRY/lib.tar.xz"
fi
export LD_LIBRARY_PATH="$CARRY/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

tests=(test_kern_cuda_ops_match_cpu test_kern_cuda_matmul_matches_cpu test_kern_cuda_sample_matches_sampler
       test_kern_cuda_greedy_matches_cpu test_kern_cuda_step_tables test_kern_cuda_step_graph
       test_kern_cuda_step_penalties)
kernel_tests=(test_kern_cuda_ops_match_cpu test_kern_cuda_matmul_matches_cpu test_kern_cuda_sample_matches_sampler)

case "$step" in
pack)
    cmake -S "$SRC" -B "$BUILD" -DCLAQ_CUDA=ON -DCLAQ_BUILD_SERVER=OFF >/dev/null
    cmake --build "$BUILD" -j2 --target "${tests[@]}" claq cuda_bench
    mkdir -p "$CARRY/bin" "$CARRY/shared/models"
    for t in "${tests[@]}" claq cuda_bench; do cp "$BUILD/$t" "$CARRY/bin/"; done
    # the backend library the engine dlopens, found beside the programs
    cp "$BUILD/libclaq_cuda.so" "$CARRY/bin/"
    # the test programs' other shared libraries (cJSON, OpenBLAS and what it needs) are not on
    # the GPU machine's image: carry them (libc, libm, libstdc++ and CUDA's own stay behind)
    # (a lib/ left by an earlier `tests` here would resolve the libraries to themselves)
    rm -rf "$CARRY/lib"
    mkdir -p "$CARRY/lib"
    for t in "${tests[@]}" claq cuda_bench; do env -u LD_LIBRARY_PATH ldd "$BUILD/$t"; done | awk '$3 ~ /^\// { print $3 }' | sort -u |
        grep -E 'libcjson|libopenblas|libgfortran|libquadmath|liblapacke' |
        while read -r l; do cp -L "$l" "$CARRY/lib/"; done
    # compressed, so that the carry stays well under the 64 MiB a call may send (OpenBLAS: 36 MiB)
    tar -C "$CARRY" -cJf "$CARRY/lib.tar.xz" lib && rm -rf "$CARRY/lib"
    sh="${CLAQ_SHARED:-$SRC/../shared}"
    cp -r "$sh/models/stories260K.bin" "$sh/models/tok512.bin" "$sh/models/tokenizer.bin" \
        "$sh/models/tinystories-656k" "$sh/models/small-lm-5m" \
        "$CARRY/shared/models/"
    excl="$(git -C "$SRC" rev-parse --git-path info/exclude)"
    case "$excl" in /*) ;; *) excl="$SRC/$excl" ;; esac
    mkdir -p "$(dirname "$excl")"
    grep -qx '/.gpu-carry/' "$excl" 2>/dev/null || echo '/.gpu-carry/' >>"$excl"
    du -sh "$CARRY"
    ;;
tests)
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    rc=0
    for t in "${tests[@]}"; do
        echo "== $t"
        CLAQ_SHARED="$CARRY/shared" "$CARRY/bin/$t" || { r=$?; echo "$t exit $r"; [ $r -eq 77 ] || rc=1; }
    done
    exit $rc
    ;;
sanitize)
    mkdir -p "$OUTDIR"
    # The matmul test's quick list (CLAQ_CUDA_TEST_QUICK) still runs every kernel and path; each
    # run is time-boxed (CLAQ_SANITIZE_TIMEOUT, 120 s) so one slow tool cannot eat the call.
    CS="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
    rc=0
    for tool in memcheck synccheck racecheck; do
        for t in "${kernel_tests[@]}"; do
            echo "== $tool $t"
            set +e
            CLAQ_CUDA_TEST_QUICK=1 CLAQ_SHARED="$CARRY/shared" \
                timeout "${CLAQ_SANITIZE_TIMEOUT:-120}" "$CS" --tool "$tool" --error-exitcode 9 \
                "$CARRY/bin/$t" 2>&1 | tee "$OUTDIR/san_${tool}_${t#test_kern_cuda_}.log" |
                grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|^FAIL|^ok:'
            r=${PIPESTATUS[0]}
            set -e
            [ "$r" -eq 0 ] || { echo "$tool $t: exit $r"; rc=1; }
        done
    done
    exit $rc
    ;;
bench)
    mkdir -p "$OUTDIR"
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader || true
    date -u +"%Y-%m-%d %H:%M UTC"
    "$CARRY/bin/cuda_bench" "${2:-200}" | tee "$OUTDIR/bench.md"
    ;;
generate)
    # claq generate end to end on the GPU and on the CPU of the same machine (the "device
    # copies" line: per decode step, a few bytes since the step became device-resident)
    for m in tinystories-656k small-lm-5m; do
        for dev in cuda cpu; do
            echo "== $m --device $dev"
            "$CARRY/bin/claq" generate --model "$CARRY/shared/models/$m" --device "$dev" \
                --prompt "Once upon a time" --max-tokens 64 --temperature 0 2>&1 >/dev/null ||
                echo "(exit $?)"
        done
    done
    ;;
step)
    # synth writes an HF directory (tokenizer copied in), --pack a .claq file from it
    layers="${2:-4}"
    tmp="${TMPDIR:-/tmp}/claq-step"
    mkdir -p "$tmp"
    "$CARRY/bin/claq" synth --shape llama-7b --layers "$layers" --out "$tmp/fp" \
        --tokenizer "$CARRY/shared/models/tokenizer.bin" >/dev/null
    for bits in 2.1 3 4; do
        "$CARRY/bin/claq" synth --pack --model "$tmp/fp" --bits "$bits" --out "$tmp/q$bits.claq" \
            >/dev/null
        # the decode step op by op, then recorded as a CUDA graph and replayed (CLAQ_CUDA_GRAPHS)
        for graphs in 0 1; do
            echo "== llama-7b shape, $layers layers, CLAQ $bits bits, --device cuda, graphs $graphs"
            CLAQ_CUDA_GRAPHS=$graphs "$CARRY/bin/claq" generate --model "$tmp/q$bits.claq" \
                --tokenizer "$tmp/fp/tokenizer.bin" --device cuda --prompt "Once" --max-tokens 128 \
                --temperature 0 2>&1 >/dev/null | tail -2 || echo "(exit $?)"
        done
    done
    # a 400-word prompt at 3 bits: prefill on the GEMV (8-token chunks) against the tensor-core
    # GEMM (CLAQ_CUDA_MMA_MIN_N=9); the prompt line of claq generate's report is the figure
    long="$(for i in $(seq 40); do printf 'Once upon a time there was a little dog who liked the sun. '; done)"
    for mma in 0 9; do
        echo "== llama-7b shape, $layers layers, CLAQ 3 bits, 400-word prompt, CLAQ_CUDA_MMA_MIN_N=$mma"
        CLAQ_CUDA_MMA_MIN_N=$mma "$CARRY/bin/claq" generate --model "$tmp/q3.claq" \
            --tokenizer "$tmp/fp/tokenizer.bin" --device cuda --prompt "$long" --max-tokens 16 \
            --temperature 0 2>&1 >/dev/null | tail -2 || echo "(exit $?)"
    done
    rm -rf "$tmp"
    ;;
ncu)
    # Nsight Compute on the CLAQ kernels of a short bench run: duration, DRAM and SM throughput,
    # occupancy and warp stalls of one GEMV, its split-K reduction and one dequantization
    mkdir -p "$OUTDIR"
    NCU="$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)"
    "$NCU" --clock-control none -k regex:'claq_(gemv|reduce|dequant)' --launch-skip 8 --launch-count 3 \
        --section SpeedOfLight --section Occupancy --section WarpStateStats \
        "$CARRY/bin/cuda_bench" 3 > "$OUTDIR/ncu.txt" 2>&1 || echo "(ncu exit $?)"
    grep -E "Duration|Memory Throughput|DRAM Throughput|Compute \(SM\)|Achieved Occupancy|Stall|claq_" \
        "$OUTDIR/ncu.txt" | head -40
    ;;
sass)
    OBJ="$(command -v cuobjdump || echo /usr/local/cuda/bin/cuobjdump)"
    lib="$BUILD/libclaq_cuda.so"
    [ -f "$lib" ] || lib="$CARRY/bin/libclaq_cuda.so"
    "$OBJ" -lelf "$lib" | grep -o 'sm_[0-9]*' | sort | uniq -c
    "$OBJ" -sass -arch sm_90 "$lib" | awk '
        /Function :/ { f = $3 }
        f ~ /claq_gemv_kILi1E|gemv_dense_kI11kern_ld_f16Li1E/ {
            for (i = 1; i <= NF; i++) if ($i ~ /^(LDS|LDG|FADD|FFMA|FMUL|HMMA|LDL|STL)/) {
                split($i, op, "."); n[f " " op[1]]++ } }
        END { for (k in n) print k, n[k] }' | sort
    ;;
*)
    echo "usage: $0 pack | tests | sanitize | bench [iters] | generate | ncu | sass" >&2
    exit 2
    ;;
esac
