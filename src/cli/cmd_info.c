/* `inferbooster info MODEL`: inputs, outputs, model metadata, op histogram, parameter
 * count and FLOPs, as text or one JSON object. */
#include <string.h>

#include "api/batch_buckets.h"
#include "api/model_internal.h"
#include "cli/cli.h"
#include "ir/graph_stats.h"
#include "passes/compile_plan.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: inferbooster info MODEL.onnx [--json]\n"
            "\n"
            "Describes a model: inputs and outputs (names, dtypes, shapes; symbolic dims by\n"
            "name), IR version, producer, opset imports, op histogram, parameter count and\n"
            "bytes (initializers), and FLOPs per run from the inferred shapes (a multiply-add\n"
            "counts 2; 'unknown' when a shape is symbolic or the graph has control flow).\n"
            "\n"
            "  --json   print one JSON object instead of text\n");
}

typedef struct info_ctx {
    const char *path;
    const ib_model *model;
    const ib__onnx_model *onnx;
    const ib__graph_statistics *stats;
} info_ctx;

static const char *domain_label(const char *d) { return d && d[0] ? d : "ai.onnx"; }

static int print_values_text(const ib_model *m, bool inputs) {
    size_t n = inputs ? ib_model_input_count(m) : ib_model_output_count(m);
    printf("%s (%zu):\n", inputs ? "inputs" : "outputs", n);
    for (size_t i = 0; i < n; i++) {
        ib_value_info v;
        ib_status s = inputs ? ib_model_input_info(m, i, &v) : ib_model_output_info(m, i, &v);
        if (s != IB_OK) return ib__cli_fail(s, "describing %s %zu", inputs ? "input" : "output", i);
        char shape[256];
        printf("  %-24s %-9s %s\n", v.name ? v.name : "", ib_dtype_name(v.dtype),
               ib__cli_shape_string(&v, shape, sizeof shape));
    }
    return IB_EXIT_OK;
}

static int print_text(const info_ctx *c) {
    const ib__onnx_model *o = c->onnx;
    const ib__graph_statistics *st = c->stats;
    char a[64], b[64];
    printf("model: %s\n", c->path);
    printf("  ir_version: %lld\n", (long long)o->ir_version);
    if ((o->producer_name && o->producer_name[0]) || (o->producer_version && o->producer_version[0]))
        printf("  producer: %s%s%s\n", o->producer_name ? o->producer_name : "",
               o->producer_version && o->producer_version[0] ? " " : "",
               o->producer_version ? o->producer_version : "");
    if (o->domain && o->domain[0]) printf("  domain: %s\n", o->domain);
    if (o->model_version) printf("  model_version: %lld\n", (long long)o->model_version);
    printf("  opsets:");
    for (int32_t i = 0; i < o->n_opsets; i++)
        printf("%s %s %lld", i ? "," : "", domain_label(o->opsets[i].domain),
               (long long)o->opsets[i].version);
    printf("%s\n", o->n_opsets ? "" : " (none)");
    int rc = print_values_text(c->model, true);
    if (rc) return rc;
    rc = print_values_text(c->model, false);
    if (rc) return rc;
    printf("nodes: %lld (%d op types)\n", (long long)st->n_nodes, st->n_op_types);
    for (int32_t i = 0; i < st->n_op_types; i++) {
        const ib__op_count *oc = &st->ops[i];
        char label[256];
        if (oc->domain && oc->domain[0])
            snprintf(label, sizeof label, "%s (%s)", oc->op_type, oc->domain);
        else
            snprintf(label, sizeof label, "%s", oc->op_type);
        printf("  %-28s %lld\n", label, (long long)oc->count);
    }
    printf("parameters: %lld (%s)\n", (long long)st->param_count,
           ib__cli_human((double)st->param_bytes, "B", a, sizeof a));
    if (st->flops_known) {
        printf("FLOPs: %s (%.0f)\n", ib__cli_human(st->flops, "FLOPs", b, sizeof b), st->flops);
    } else {
        printf("FLOPs: unknown (%lld node%s with symbolic shapes or control flow, first %s; "
               "known part %s)\n",
               (long long)st->n_flops_unknown, st->n_flops_unknown == 1 ? "" : "s",
               st->first_flops_unknown ? ib__node_label(st->first_flops_unknown) : "?",
               ib__cli_human(st->flops, "FLOPs", b, sizeof b));
    }
    /* What the compiler would plan for this machine (a plan is cheap: nothing is built). */
    ib__target tgt;
    ib__plan *plan = NULL;
    if (ib__target_resolve(NULL, &tgt) == IB_OK &&
        ib__build_plan(ib__model_graph(c->model), &tgt, NULL, &plan) == IB_OK) {
        int32_t fallback = 0;
        for (int32_t k = 0; k < plan->n_kernels; k++) fallback += plan->kernels[k].tmpl == NULL;
        printf("planned arena: %zu bytes (compiled for host %s: %d kernels, %d fallback)\n",
               plan->arena_bytes, tgt.name, plan->n_kernels, fallback);
    } else {
        printf("planned arena: unknown (%s)\n", ib_last_error());
    }
    ib__plan_destroy(plan);
    ib__buckets bk;
    char desc[400];
    if (ib__buckets_for_model(c->model, &bk)) {
        ib__buckets_describe(&bk, desc, sizeof desc);
        printf("batch buckets: %s\n", desc);
    } else {
        printf("batch buckets: none (the batch is static)\n");
    }
    return IB_EXIT_OK;
}

static int print_values_json(const ib_model *m, bool inputs) {
    size_t n = inputs ? ib_model_input_count(m) : ib_model_output_count(m);
    printf("\"%s\":[", inputs ? "inputs" : "outputs");
    for (size_t i = 0; i < n; i++) {
        ib_value_info v;
        ib_status s = inputs ? ib_model_input_info(m, i, &v) : ib_model_output_info(m, i, &v);
        if (s != IB_OK) return ib__cli_fail(s, "describing %s %zu", inputs ? "input" : "output", i);
        printf("%s{\"name\":", i ? "," : "");
        ib__json_string(stdout, v.name);
        printf(",\"dtype\":");
        ib__json_string(stdout, ib_dtype_name(v.dtype));
        printf(",\"shape\":");
        if (v.rank < 0) {
            printf("null");
        } else {
            putchar('[');
            for (int32_t d = 0; d < v.rank && d < IB_MAX_RANK; d++) {
                if (d) putchar(',');
                if (v.shape[d] >= 0) printf("%lld", (long long)v.shape[d]);
                else if (v.dim_names[d] && v.dim_names[d][0]) ib__json_string(stdout, v.dim_names[d]);
                else printf("null");
            }
            putchar(']');
        }
        putchar('}');
    }
    putchar(']');
    return IB_EXIT_OK;
}

static int print_json(const info_ctx *c) {
    const ib__onnx_model *o = c->onnx;
    const ib__graph_statistics *st = c->stats;
    printf("{\"model\":");
    ib__json_string(stdout, c->path);
    printf(",\"ir_version\":%lld,\"producer_name\":", (long long)o->ir_version);
    ib__json_string(stdout, o->producer_name);
    printf(",\"producer_version\":");
    ib__json_string(stdout, o->producer_version);
    printf(",\"domain\":");
    ib__json_string(stdout, o->domain);
    printf(",\"model_version\":%lld,\"opsets\":[", (long long)o->model_version);
    for (int32_t i = 0; i < o->n_opsets; i++) {
        printf("%s{\"domain\":", i ? "," : "");
        ib__json_string(stdout, o->opsets[i].domain);
        printf(",\"version\":%lld}", (long long)o->opsets[i].version);
    }
    printf("],");
    int rc = print_values_json(c->model, true);
    if (rc) return rc;
    putchar(',');
    rc = print_values_json(c->model, false);
    if (rc) return rc;
    printf(",\"nodes\":%lld,\"ops\":[", (long long)st->n_nodes);
    for (int32_t i = 0; i < st->n_op_types; i++) {
        printf("%s{\"op_type\":", i ? "," : "");
        ib__json_string(stdout, st->ops[i].op_type);
        printf(",\"domain\":");
        ib__json_string(stdout, st->ops[i].domain);
        printf(",\"count\":%lld}", (long long)st->ops[i].count);
    }
    printf("],\"parameters\":%lld,\"parameter_bytes\":%lld,\"flops\":", (long long)st->param_count,
           (long long)st->param_bytes);
    if (st->flops_known) ib__json_number(stdout, st->flops);
    else printf("null");
    printf(",\"flops_known_part\":");
    ib__json_number(stdout, st->flops);
    printf(",\"flops_unknown_nodes\":%lld", (long long)st->n_flops_unknown);
    ib__buckets bk;
    bool dynamic = ib__buckets_for_model(c->model, &bk);
    printf(",\"batch_buckets\":{\"mode\":\"%s\",\"sizes\":[",
           !dynamic ? "static" : bk.mode == IB_BUCKETS_SPLIT ? "split"
                               : bk.mode == IB_BUCKETS_PAD  ? "pad" : "off");
    for (int64_t b = 1; dynamic && bk.mode != IB_BUCKETS_OFF && b <= bk.max; b *= 2)
        printf("%s%lld", b > 1 ? "," : "", (long long)b);
    printf("],\"reason\":");
    ib__json_string(stdout, dynamic ? bk.reason : "the batch is static");
    printf("}}\n");
    return IB_EXIT_OK;
}

int ib__cmd_info(int argc, char **argv) {
    bool json = false;
    const char *path = NULL;
    const ib__cli_opt options[] = {{"--json", NULL, IB_CLI_FLAG, &json, 0, 0}};
    int parsed = ib__cli_parse("info", argc, argv, options, 1, &path, usage);
    if (parsed >= 0) return parsed;
    if (!path) return ib__cli_no_model("info", usage);
    ib_model *model = NULL;
    ib_status s = ib_model_load_file(path, &model);
    if (s != IB_OK) return ib__cli_fail(s, "cannot load model '%s'", path);
    ib__graph_statistics stats;
    s = ib__graph_stats(ib__model_graph(model), &stats);
    if (s != IB_OK) {
        int rc = ib__cli_fail(s, "cannot compute statistics of '%s'", path);
        ib_model_destroy(model);
        return rc;
    }
    info_ctx c = {path, model, ib__model_onnx(model), &stats};
    int rc = json ? print_json(&c) : print_text(&c);
    ib__graph_stats_free(&stats);
    ib_model_destroy(model);
    if (rc == IB_EXIT_OK && fflush(stdout) != 0) rc = IB_EXIT_FAILURE;
    return rc;
}
