/* `inferbooster compile MODEL`: builds the kernel plan for a target and batch, generates
 * and compiles its C, and writes the artifact directory (model.so, weights.bin,
 * meta.json, model.onnx when some nodes run the reference op), through the
 * compiled-model cache: a model compiled before is copied out of its entry. */
#include <string.h>
#include <sys/stat.h>

#include "api/compiled.h"
#include "api/model_cache.h"
#include "codegen/codegen.h"
#include "ir/shape_inference.h"
#include "tune/tune.h"
#include "cli/cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: inferbooster compile MODEL.onnx [options]\n"
            "\n"
            "  --target T      host (default), x86-64-v4, x86-64-v3, generic; aarch64 or\n"
            "                  aarch64-dotprod (64-bit ARM, cross-compiled: run the artifact\n"
            "                  with inferbooster-run, make cross); or an NVIDIA GPU:\n"
            "                  cuda-sm80, cuda-sm90 (fp32; -tf32, -fp16, -bf16 suffixes use\n"
            "                  tensor cores); host picks the GPU when one is detected and\n"
            "                  the model is big enough to gain from it\n"
            "  --batch N       size of the symbolic batch dimension (default: the model's, 1\n"
            "                  when symbolic)\n"
            "  -o DIR          artifact directory (default: MODEL's name + \".ibc\"); an\n"
            "                  existing artifact there is replaced atomically\n"
            "  --keep-source   keep the generated C (unit_*.c, model_main.c) in the artifact\n"
            "                  (compiles without the cache, which holds no sources)\n"
            "  --no-cache      compile without the compiled-model cache\n"
            "  --cache-dir DIR the cache (default: INFERBOOSTER_CACHE_DIR, else\n"
            "                  $XDG_CACHE_HOME/inferbooster or ~/.cache/inferbooster)\n"
            "  --json          print the report as JSON\n"
            "\n"
            "The artifact runs with 'inferbooster run DIR' or ib_session_create_from_artifact.\n");
}

bool ib__cli_is_artifact(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) return false;
    char p[4200];
    snprintf(p, sizeof p, "%s/model.so", path);
    if (stat(p, &sb) == 0) return true;
    snprintf(p, sizeof p, "%s/cuda_plan.txt", path);
    return stat(p, &sb) == 0;
}

/* MODEL.onnx -> MODEL.ibc (next to the model). */
static char *default_out(const char *model) {
    size_t n = strlen(model);
    if (n > 5 && strcmp(model + n - 5, ".onnx") == 0) n -= 5;
    char *out = ib__malloc(n + 5);
    if (!out) return NULL;
    memcpy(out, model, n);
    memcpy(out + n, ".ibc", 5);
    return out;
}

typedef struct cli_build {
    const ib_model *model;
    const ib__target *target;
    int32_t batch;
    ib__compile_report report;
    ib_status status; /* of the compile itself */
} cli_build;

/* A cache miss: plan and compile into the entry's directory. */
static ib_status build_into_cache(void *ctx, const char *dir) {
    cli_build *b = ctx;
    double t0 = ib__now_s() * 1e3;
    ib__compile_options opt;
    ib__compile_options_init(&opt);
    opt.batch = b->batch;
    ib__tune_knobs *tuned = NULL; /* the tuning database's best knobs, when there is one */
    ib_status st = ib__tune_compile_knobs(b->target, NULL, &tuned);
    if (tuned) opt.knob_source = ib__tune_knobs_source(tuned);
    ib__plan *plan = NULL;
    if (st == IB_OK) st = ib__build_plan(b->model->graph, b->target, &opt, &plan);
    int32_t tuned_kernels = tuned ? ib__tune_knobs_applied(tuned) : 0;
    ib__tune_knobs_destroy(tuned);
    if (st) ib__error_prefix(st, "cannot compile: ");
    if (st == IB_OK) st = ib__artifact_write_files(plan, dir, false);
    if (st == IB_OK) {
        ib__compile_report *r = &b->report;
        memset(r, 0, sizeof *r);
        snprintf(r->target, sizeof r->target, "%s", b->target->name);
        r->batch = ib__codegen_plan_batch(plan);
        r->kernels = plan->n_kernels;
        r->fallback = ib__codegen_fallback_count(plan);
        for (int32_t k = 0; k < plan->n_kernels; k++)
            if (plan->kernels[k].n_nodes > 1) r->fused++;
        r->arena_bytes = plan->arena_bytes;
        r->weights_bytes = plan->weights_bytes;
        r->has_model_copy = r->fallback > 0;
        r->tuned_kernels = tuned_kernels;
        r->compile_ms = ib__now_s() * 1e3 - t0;
    }
    ib__plan_destroy(plan);
    b->status = st;
    return st;
}

/* Compiles through the cache; *cache_state: "hit" or "miss"; key filled. */
static ib_status compile_cached(const ib_model *model, const char *model_path,
                                const char *target_name, int32_t batch, const char *cache_dir,
                                const char *out_dir, ib__compile_report *rep,
                                const char **cache_state, char key[IB_CACHE_KEY_HEX + 1]) {
    ib__target target;
    IB_TRY(ib__target_resolve(target_name, &target));
    IB_TRY(ib__check_supported(model->graph));
    ib__model_cache *mc = NULL;
    IB_TRY(ib__model_cache_open(model, &target, cache_dir, NULL, &mc));
    ib_status st = ib__model_cache_key(mc, batch, key);
    cli_build b = {model, &target, batch, {{0}}, IB_OK};
    ib__cache_entry *e = NULL;
    bool built = false;
    if (st == IB_OK)
        st = ib__cache_insert(ib__model_cache_handle(mc), key, ib__model_cache_label(mc),
                              ib__model_cache_target(mc), build_into_cache, &b, &e, &built);
    if (st == IB_OK) {
        ib__compile_report copied;
        st = ib__artifact_export(ib__cache_entry_path(e), model_path, out_dir, &copied);
        if (st == IB_OK) {
            if (built) {
                copied.compile_ms += b.report.compile_ms;
                copied.tuned_kernels = b.report.tuned_kernels;
            }
            *rep = copied;
            *cache_state = built ? "miss" : "hit";
        }
    }
    ib__cache_release(e);
    ib__model_cache_close(mc);
    return st;
}

int ib__cmd_compile(int argc, char **argv) {
    const char *model_path = NULL, *target = NULL, *out_dir = NULL, *cache_dir = NULL;
    long long batch = 0;
    bool keep = false, json = false, no_cache = false;
    const ib__cli_opt options[] = {
        {"--target", NULL, IB_CLI_STRING, &target, 0, 0},
        {"--batch", NULL, IB_CLI_INT, &batch, 1, 1 << 20},
        {"--output", "-o", IB_CLI_STRING, &out_dir, 0, 0},
        {"--keep-source", NULL, IB_CLI_FLAG, &keep, 0, 0},
        {"--json", NULL, IB_CLI_FLAG, &json, 0, 0},
        {"--no-cache", NULL, IB_CLI_FLAG, &no_cache, 0, 0},
        {"--cache-dir", NULL, IB_CLI_STRING, &cache_dir, 0, 0},
    };
    int parsed = ib__cli_parse("compile", argc, argv, options, sizeof options / sizeof *options,
                               &model_path, usage);
    if (parsed >= 0) return parsed;
    if (!model_path) return ib__cli_no_model("compile", usage);
    char *dflt = out_dir ? NULL : default_out(model_path);
    if (!out_dir) out_dir = dflt;
    if (!out_dir) return IB_EXIT_FAILURE;
    ib_model *model = NULL;
    ib_status s = ib_model_load_file(model_path, &model);
    int rc = IB_EXIT_OK;
    ib__compile_report rep;
    const char *cache_state = "off";
    char key[IB_CACHE_KEY_HEX + 1] = "";
    bool use_cache = !no_cache && !keep && !ib__model_cache_disabled_by_env();
    if (use_cache) {
        /* "host" with a GPU detected: the compile decides between the GPU and the CPU
         * (ib__artifact_compile), which a key fixed beforehand cannot; named targets,
         * CUDA ones included, go through the cache. */
        ib__target t;
        bool named = target && strcmp(target, "host") != 0;
        if (ib__target_resolve_for_model(target, -1.0, &t) != IB_OK ||
            (ib__target_is_cuda(&t) && !named))
            use_cache = false;
        ib__error_clear();
    }
    if (s != IB_OK) {
        rc = ib__cli_fail(s, "cannot load model '%s'", model_path);
    } else if (use_cache) {
        s = compile_cached(model, model_path, target, (int32_t)batch, cache_dir, out_dir, &rep,
                           &cache_state, key);
        if (s != IB_OK) rc = ib__cli_fail(s, "cannot compile '%s'", model_path);
    } else {
        s = ib__artifact_compile(model, model_path, target, (int32_t)batch, out_dir, keep, &rep);
        if (s != IB_OK) rc = ib__cli_fail(s, "cannot compile '%s'", model_path);
    }
    if (rc == IB_EXIT_OK && json) {
        printf("{\"artifact\": ");
        ib__json_string(stdout, out_dir);
        printf(", \"target\": ");
        ib__json_string(stdout, rep.target);
        printf(", \"batch\": %lld, \"kernels\": %d, \"fused\": %d, \"fallback\": %d, "
               "\"arena_bytes\": %zu, \"weights_bytes\": %zu, \"compile_ms\": ",
               (long long)rep.batch, rep.kernels, rep.fused, rep.fallback, rep.arena_bytes,
               rep.weights_bytes);
        ib__json_number(stdout, rep.compile_ms);
        printf(", \"model_copy\": %s, \"cache\": \"%s\"", rep.has_model_copy ? "true" : "false",
               cache_state);
        if (key[0]) printf(", \"key\": \"%s\"", key);
        printf("}\n");
    } else if (rc == IB_EXIT_OK) {
        char a[64], w[64];
        printf("compiled %s -> %s\n", model_path, out_dir);
        printf("  target:   %s%s\n", rep.target, keep ? " (sources kept)" : "");
        if (rep.batch) printf("  batch:    %lld\n", (long long)rep.batch);
        printf("  kernels:  %d (%d fused, %d reference fallback)\n", rep.kernels, rep.fused,
               rep.fallback);
        printf("  arena:    %s\n", ib__cli_human((double)rep.arena_bytes, "B", a, sizeof a));
        printf("  weights:  %s\n", ib__cli_human((double)rep.weights_bytes, "B", w, sizeof w));
        if (rep.tuned_kernels) printf("  tuned:    %d kernels (tuning database)\n", rep.tuned_kernels);
        printf("  time:     %.0f ms\n", rep.compile_ms);
        if (key[0]) printf("  cache:    %s (key %.16s)\n", cache_state, key);
        else printf("  cache:    off\n");
    }
    ib_model_destroy(model);
    ib__free(dflt);
    return rc;
}
