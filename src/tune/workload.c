/* Tuning workloads: the canonical key of a template kernel, and a model's de-duplicated
 * tasks (one per distinct key, weighted by occurrences and FLOPs). */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tune/tune.h"

void ib__tune_target_key(const ib__target *t, char out[IB_TUNE_TARGET_MAX]) {
    snprintf(out, IB_TUNE_TARGET_MAX, "%s/%dc", t->name, t->num_cores > 0 ? t->num_cores : 1);
}

void ib__tune_key_hash(const char *key, char out[17]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    static const char hex[] = "0123456789abcdef";
    if (!EVP_Digest(key, strlen(key), md, &len, EVP_sha256(), NULL) || len < 8) {
        snprintf(out, 17, "%016llx", 0ull);
        return;
    }
    for (int i = 0; i < 8; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[16] = '\0';
}

static const char *layout_tag(const ib__pbuf *b, char *buf, size_t cap) {
    switch (b->layout) {
    case IB_LAYOUT_NCHWC: snprintf(buf, cap, "/c%d", (int)b->block); break;
    case IB_LAYOUT_PACKED: snprintf(buf, cap, "/p%d", (int)b->block); break;
    default: buf[0] = '\0'; break;
    }
    return buf;
}

static void buf_sig(ib__sb *sb, const ib__plan *plan, int32_t id) {
    if (id < 0 || id >= plan->n_bufs) {
        ib__sb_printf(sb, "-");
        return;
    }
    const ib__pbuf *b = &plan->bufs[id];
    /* weights are constants the template may specialise on (shape only, not values) */
    ib__sb_printf(sb, "%s:%s[", b->kind == IB_BUF_WEIGHT ? "w" : "x", ib_dtype_name(b->dtype));
    for (int32_t d = 0; d < b->rank; d++)
        ib__sb_printf(sb, "%s%lld", d ? "," : "", (long long)b->dims[d]);
    char lt[16];
    ib__sb_printf(sb, "]%s", layout_tag(b, lt, sizeof lt));
}

static int attr_cmp(const void *a, const void *b) {
    const ib__attr *x = *(const ib__attr *const *)a, *y = *(const ib__attr *const *)b;
    return strcmp(x->name ? x->name : "", y->name ? y->name : "");
}

/* The anchor's attributes, sorted by name (their order in the file does not matter). */
static void attrs_sig(ib__sb *sb, const ib__node *n) {
    const ib__attr *sorted[64];
    int32_t m = n->n_attrs < 64 ? n->n_attrs : 64;
    for (int32_t i = 0; i < m; i++) sorted[i] = &n->attrs[i];
    qsort(sorted, (size_t)m, sizeof *sorted, attr_cmp);
    ib__sb_printf(sb, "{");
    for (int32_t i = 0; i < m; i++) {
        const ib__attr *a = sorted[i];
        ib__sb_printf(sb, "%s%s:", i ? "," : "", a->name ? a->name : "?");
        switch (a->kind) {
        case IB_ATTR_INT: ib__sb_printf(sb, "%lld", (long long)a->i); break;
        case IB_ATTR_FLOAT: ib__sb_printf(sb, "%.9g", (double)a->f); break;
        case IB_ATTR_STRING:
            for (size_t c = 0; c < a->s_len && c < 32; c++) {
                char ch = a->s[c];
                bool plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                             (ch >= '0' && ch <= '9') || ch == '_';
                ib__sb_printf(sb, "%c", plain ? ch : '_');
            }
            break;
        case IB_ATTR_INTS:
            ib__sb_printf(sb, "[");
            for (int32_t j = 0; j < a->count && j < 16; j++)
                ib__sb_printf(sb, "%s%lld", j ? "," : "", (long long)a->ints[j]);
            ib__sb_printf(sb, "]");
            break;
        case IB_ATTR_FLOATS:
            ib__sb_printf(sb, "[");
            for (int32_t j = 0; j < a->count && j < 16; j++)
                ib__sb_printf(sb, "%s%.9g", j ? "," : "", (double)a->floats[j]);
            ib__sb_printf(sb, "]");
            break;
        default: ib__sb_printf(sb, "#%d", (int)a->kind); break;
        }
    }
    ib__sb_printf(sb, "}");
}

bool ib__tune_workload_key(const ib__plan *plan, const ib__pkernel *k, char *out, size_t cap) {
    if (!k->tmpl || !k->tmpl->knobs_valid || !k->tmpl->emit || k->knobs.n == 0 ||
        k->tmpl == &ib__template_layout_transform)
        return false;
    ib__sb sb;
    ib__sb_init(&sb);
    ib__sb_printf(&sb, "t=%s|ops=", k->tmpl->name);
    for (int32_t n = 0; n < k->n_nodes; n++)
        ib__sb_printf(&sb, "%s%s", n ? "+" : "", k->nodes[n]->op_type);
    if (k->n_nodes > 0) {
        ib__sb_printf(&sb, "|a=");
        attrs_sig(&sb, k->nodes[0]);
    }
    ib__sb_printf(&sb, "|in=");
    for (int32_t i = 0; i < k->n_in; i++) {
        if (i) ib__sb_printf(&sb, ",");
        buf_sig(&sb, plan, k->in[i]);
    }
    ib__sb_printf(&sb, "|out=");
    for (int32_t i = 0; i < k->n_out; i++) {
        if (i) ib__sb_printf(&sb, ",");
        buf_sig(&sb, plan, k->out[i]);
    }
    if (k->n_epi) ib__sb_printf(&sb, "|epi=");
    for (int32_t s = 0; s < k->n_epi; s++) {
        const ib__epilogue_step *e = &k->epi[s];
        ib__sb_printf(&sb, "%s%s", s ? "," : "", ib__op_name(e->op));
        if (e->kind == IB_EPI_BINARY) {
            static const char *const kinds[] = {"s", "c", "f"};
            ib__sb_printf(&sb, ":%s%s", kinds[e->operand_kind <= IB_EPI_FULL ? e->operand_kind : 0],
                          e->operand_first ? "1" : "");
            if (e->operand_kind == IB_EPI_FULL) {
                ib__sb_printf(&sb, ":");
                buf_sig(&sb, plan, e->operand_buf);
            }
        }
    }
    bool ok = ib__sb_status(&sb) == IB_OK && sb.len + 1 <= cap && sb.len + 1 <= IB_TUNE_KEY_MAX;
    if (ok) memcpy(out, sb.data, sb.len + 1);
    ib__sb_free(&sb);
    if (!ok) ib__error_clear();
    return ok;
}

/* ---- Task extraction ------------------------------------------------------------------ */

static void task_label(const ib__plan *plan, const ib__pkernel *k, char *out, size_t cap) {
    int len = snprintf(out, cap, "%s", k->tmpl->name);
    if (k->n_in > 0 && k->in[0] >= 0 && len > 0 && (size_t)len < cap) {
        const ib__pbuf *b = &plan->bufs[k->in[0]];
        for (int32_t d = 0; d < b->rank && (size_t)len < cap; d++)
            len += snprintf(out + len, cap - (size_t)len, "%s%lld", d ? "x" : " ",
                            (long long)b->dims[d]);
    }
    if (k->n_out > 0 && k->out[0] >= 0 && len > 0 && (size_t)len < cap) {
        const ib__pbuf *b = &plan->bufs[k->out[0]];
        len += snprintf(out + len, cap - (size_t)len, " ->");
        for (int32_t d = 0; d < b->rank && (size_t)len < cap; d++)
            len += snprintf(out + len, cap - (size_t)len, "%s%lld", d ? "x" : " ",
                            (long long)b->dims[d]);
    }
    if (k->n_nodes > 0 && (size_t)len < cap) {
        const ib__node *n = k->nodes[0];
        for (int32_t i = 0; i < n->n_attrs && (size_t)len < cap; i++)
            if (n->attrs[i].kind == IB_ATTR_INTS && n->attrs[i].count == 2 && n->attrs[i].name &&
                (strcmp(n->attrs[i].name, "kernel_shape") == 0 ||
                 strcmp(n->attrs[i].name, "strides") == 0))
                len += snprintf(out + len, cap - (size_t)len, " %c%lldx%lld", n->attrs[i].name[0],
                                (long long)n->attrs[i].ints[0], (long long)n->attrs[i].ints[1]);
    }
}

static int task_cmp(const void *a, const void *b) {
    const ib__tune_task *x = a, *y = b;
    double wx = x->count * (x->flops > 0 ? x->flops : 1), wy = y->count * (y->flops > 0 ? y->flops : 1);
    if (wx != wy) return wx > wy ? -1 : 1;
    return strcmp(x->key, y->key);
}

ib_status ib__tune_extract(const ib__graph *graph, const ib__target *target, int32_t batch,
                           ib__tune_taskset **out) {
    ib__tune_knobs *tk = NULL;
    IB_TRY(ib__tune_knobs_create(NULL, target, &tk));
    ib__compile_options opt;
    ib__compile_options_init(&opt);
    opt.batch = batch;
    opt.knob_source = ib__tune_knobs_source(tk);
    ib__plan *plan = NULL;
    ib_status st = ib__build_plan(graph, target, &opt, &plan);
    if (st) {
        ib__tune_knobs_destroy(tk);
        return st;
    }
    ib__tune_taskset *ts = ib__calloc(1, sizeof *ts);
    if (!ts) {
        ib__tune_knobs_destroy(tk);
        ib__plan_destroy(plan);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory extracting tasks");
    }
    ts->plan = plan;
    ts->kernel_keys = ib__calloc((size_t)plan->n_kernels + 1, sizeof *ts->kernel_keys);
    if (!ts->kernel_keys) st = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory extracting tasks");
    for (int32_t i = 0; i < plan->n_kernels && st == IB_OK; i++) {
        const char *key = ib__tune_knobs_key_of(tk, i);
        if (!key) continue;
        if (!(ts->kernel_keys[i] = ib__strdup(key))) {
            st = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory extracting tasks");
            break;
        }
        const ib__pkernel *k = &plan->kernels[i];
        int32_t t = 0;
        while (t < ts->n && strcmp(ts->tasks[t].key, key) != 0) t++;
        if (t < ts->n) {
            ts->tasks[t].count++;
            continue;
        }
        if (ts->n == ts->cap) {
            int32_t ncap = ts->cap ? ts->cap * 2 : 16;
            ib__tune_task *n = ib__realloc(ts->tasks, (size_t)ncap * sizeof *n);
            if (!n) {
                st = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory extracting tasks");
                break;
            }
            ts->tasks = n;
            ts->cap = ncap;
        }
        ib__tune_task *task = &ts->tasks[ts->n++];
        memset(task, 0, sizeof *task);
        snprintf(task->key, sizeof task->key, "%s", key);
        ib__tune_key_hash(task->key, task->hash);
        task->tmpl = k->tmpl;
        task->kernel = i;
        task->count = 1;
        task->flops = k->tmpl->flops ? k->tmpl->flops(plan, k) : 0.0;
        task->defaults = k->knobs;
        task_label(plan, k, task->label, sizeof task->label);
    }
    ib__tune_knobs_destroy(tk);
    if (st) {
        ib__tune_taskset_destroy(ts);
        return st;
    }
    if (ts->n > 1) qsort(ts->tasks, (size_t)ts->n, sizeof *ts->tasks, task_cmp);
    *out = ts;
    return IB_OK;
}

void ib__tune_taskset_destroy(ib__tune_taskset *ts) {
    if (!ts) return;
    for (int32_t i = 0; ts->kernel_keys && ts->plan && i < ts->plan->n_kernels; i++)
        ib__free(ts->kernel_keys[i]);
    ib__free(ts->kernel_keys);
    ib__plan_destroy(ts->plan);
    ib__free(ts->tasks);
    ib__free(ts);
}
