/* Kernel-template test harness (see kernel_harness.h): hand-built one-kernel plans,
 * batched compilation of the emitted kernels, and comparison with the reference ops. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "codegen/cuda/cuda_emit.h"
#include "codegen/toolchain.h"
#include "kernel_harness.h"
#include "runtime/cuda_runtime.h"

typedef struct kh_val {
    ib__value v; /* first: an ib__value * of ours converts back */
    ib_tensor t;
    float *data;
    int64_t count;
} kh_val;

typedef struct kh_case {
    ib__plan *plan;
    char label[96];
    int32_t out_buf;
    const kh_val *want;
} kh_case;

#define KH_MAX_OBJS 4096
#define KH_MAX_CASES 512

struct ib_kh_batch {
    ib__target target;
    ib__pool *pool;
    uint64_t rng;
    int32_t n_objs;
    void *objs[KH_MAX_OBJS]; /* everything to free with ib__free */
    int32_t n_cases;
    kh_case cases[KH_MAX_CASES];
    ib__sb unit;
    int32_t n_units;   /* compiled so far, for unique file names */
    bool compile_only; /* the host cannot run the target's code: build, do not run */
    char no_run_reason[200];
};

static void *keep(ib_kh_batch *b, void *p) {
    if (!p) return NULL;
    if (b->n_objs >= KH_MAX_OBJS) {
        ib__free(p);
        fprintf(stderr, "kernel harness: too many objects\n");
        return NULL;
    }
    b->objs[b->n_objs++] = p;
    return p;
}

static void emit_prelude(ib__sb *sb, const ib__target *t) {
    if (ib__target_is_cuda(t)) ib__cuda_prelude(sb, t);
    else ib__emit_prelude(sb, t);
}

static float frand(ib_kh_batch *b) {
    b->rng ^= b->rng << 13;
    b->rng ^= b->rng >> 7;
    b->rng ^= b->rng << 17;
    return (float)((double)(b->rng >> 40) / (double)(1ull << 24));
}

ib_status ib_kh_batch_create_ex(const char *target_name, ib__pool *pool, bool allow_compile_only,
                                ib_kh_batch **out) {
    ib__target t;
    IB_TRY(ib__target_resolve(target_name, &t));
    if (!ib_kh_can_run(&t) && !allow_compile_only) {
        ib__error_clear();
        return IB_ERR_UNSUPPORTED;
    }
    ib_kh_batch *b = ib__calloc(1, sizeof *b);
    if (!b) return IB_ERR_OUT_OF_MEMORY;
    b->target = t;
    b->pool = pool;
    b->rng = 0x9E3779B97F4A7C15ull;
    b->compile_only = !ib_kh_can_run(&t);
    if (ib__target_is_cuda(&t)) { /* runs only with a GPU and its driver present */
        b->compile_only = !ib__cuda_driver_available(b->no_run_reason, sizeof b->no_run_reason);
        if (!t.is_host && !b->compile_only) {
            snprintf(b->no_run_reason, sizeof b->no_run_reason, "the GPU is older than %s", t.name);
            b->compile_only = true;
        }
    }
    ib__sb_init(&b->unit);
    emit_prelude(&b->unit, &t);
    *out = b;
    return IB_OK;
}

ib_status ib_kh_batch_create(const char *target_name, ib__pool *pool, ib_kh_batch **out) {
    return ib_kh_batch_create_ex(target_name, pool, false, out);
}

static void clear_cases(ib_kh_batch *b) {
    for (int32_t i = 0; i < b->n_cases; i++) ib__plan_destroy(b->cases[i].plan);
    b->n_cases = 0;
    ib__sb_free(&b->unit);
    ib__sb_init(&b->unit);
    emit_prelude(&b->unit, &b->target);
}

void ib_kh_batch_destroy(ib_kh_batch *b) {
    if (!b) return;
    clear_cases(b);
    ib__sb_free(&b->unit);
    for (int32_t i = 0; i < b->n_objs; i++) ib__free(b->objs[i]);
    ib__free(b);
}

const ib__target *ib_kh_target(const ib_kh_batch *b) { return &b->target; }
int32_t ib_kh_block(const ib_kh_batch *b) { return ib__target_vector_floats(&b->target); }

static kh_val *new_val(ib_kh_batch *b, int32_t rank, const int64_t *dims) {
    kh_val *v = keep(b, ib__calloc(1, sizeof *v));
    if (!v) return NULL;
    int64_t n = ib__shape_count(dims, rank);
    if (n < 0) return NULL;
    v->data = keep(b, ib__calloc((size_t)(n ? n : 1), sizeof(float)));
    if (!v->data) return NULL;
    v->count = n;
    v->v.name = "v";
    v->v.dtype = IB_DTYPE_FLOAT32;
    v->v.rank = rank;
    for (int32_t d = 0; d < IB_MAX_RANK; d++) v->v.dims[d] = d < rank ? dims[d] : -1;
    v->t.dtype = IB_DTYPE_FLOAT32;
    v->t.rank = rank;
    for (int32_t d = 0; d < rank; d++) v->t.shape[d] = dims[d];
    v->t.data = v->data;
    v->t.nbytes = (size_t)n * sizeof(float);
    return v;
}

ib__value *ib_kh_input(ib_kh_batch *b, int32_t rank, const int64_t *dims) {
    kh_val *v = new_val(b, rank, dims);
    if (!v) return NULL;
    v->v.kind = IB_VALUE_INPUT;
    for (int64_t i = 0; i < v->count; i++) v->data[i] = 2.0f * frand(b) - 1.0f;
    return &v->v;
}

ib__value *ib_kh_const(ib_kh_batch *b, int32_t rank, const int64_t *dims, float lo, float hi) {
    kh_val *v = new_val(b, rank, dims);
    if (!v) return NULL;
    v->v.kind = IB_VALUE_INITIALIZER;
    for (int64_t i = 0; i < v->count; i++) v->data[i] = lo + (hi - lo) * frand(b);
    v->v.constant = &v->t;
    return &v->v;
}

ib__attr ib_kh_attr_int(const char *name, int64_t v) {
    ib__attr a;
    memset(&a, 0, sizeof a);
    a.name = name;
    a.kind = IB_ATTR_INT;
    a.i = v;
    return a;
}

ib__attr ib_kh_attr_float(const char *name, float v) {
    ib__attr a;
    memset(&a, 0, sizeof a);
    a.name = name;
    a.kind = IB_ATTR_FLOAT;
    a.f = v;
    return a;
}

ib__attr ib_kh_attr_ints(const char *name, int32_t n, const int64_t *v) {
    ib__attr a;
    memset(&a, 0, sizeof a);
    a.name = name;
    a.kind = IB_ATTR_INTS;
    a.ints = (int64_t *)v;
    a.count = n;
    return a;
}

ib__attr ib_kh_attr_string(const char *name, const char *s) {
    ib__attr a;
    memset(&a, 0, sizeof a);
    a.name = name;
    a.kind = IB_ATTR_STRING;
    a.s = s;
    a.s_len = strlen(s);
    return a;
}

static kh_val *as_kh(ib__value *v) { return (kh_val *)v; }

ib__value *ib_kh_node(ib_kh_batch *b, ib__op_id op, int32_t opset, int32_t n_in,
                      ib__value *const *in, int32_t n_attrs, const ib__attr *attrs) {
    if (n_in < 0 || n_in > 16 || n_attrs < 0 || n_attrs > 16) return NULL;
    ib__node *n = keep(b, ib__calloc(1, sizeof *n));
    ib__value **ins = keep(b, ib__calloc((size_t)n_in + 1, sizeof *ins));
    ib__value **outs = keep(b, ib__calloc(1, sizeof *outs));
    ib__attr *as = keep(b, ib__calloc((size_t)n_attrs + 1, sizeof *as));
    if (!n || !ins || !outs || !as) return NULL;
    for (int32_t i = 0; i < n_attrs; i++) {
        as[i] = attrs[i];
        if (as[i].kind == IB_ATTR_INTS) {
            int64_t *c = keep(b, ib__calloc((size_t)as[i].count + 1, sizeof(int64_t)));
            if (!c) return NULL;
            if (as[i].count) memcpy(c, as[i].ints, (size_t)as[i].count * sizeof(int64_t));
            as[i].ints = c;
        }
    }
    for (int32_t i = 0; i < n_in; i++) ins[i] = in[i];
    n->name = "kh";
    n->op_type = ib__op_name(op);
    n->domain = "";
    n->op = op;
    n->opset = opset;
    n->n_inputs = n_in;
    n->inputs = ins;
    n->n_outputs = 1;
    n->outputs = outs;
    n->n_attrs = n_attrs;
    n->attrs = as;

    /* Infer as at run time (every input's data known), then run the reference op. */
    ib__value tmp[16], oval;
    const ib__value *vp[16];
    const ib_tensor *tin[16];
    for (int32_t i = 0; i < n_in; i++) {
        vp[i] = NULL;
        tin[i] = NULL;
        if (!in[i]) continue;
        tmp[i] = *in[i];
        tmp[i].constant = &as_kh(in[i])->t;
        vp[i] = &tmp[i];
        tin[i] = &as_kh(in[i])->t;
    }
    memset(&oval, 0, sizeof oval);
    oval.name = "out";
    oval.rank = -1;
    ib__value *op_out[1] = {&oval};
    const ib__op_def *def = ib__op_get(op);
    if (!def) {
        fprintf(stderr, "kernel harness: no reference for %s\n", ib__op_name(op));
        return NULL;
    }
    ib__infer_ctx ic = {n, opset, n_in, vp, 1, op_out};
    ib_status st = def->infer(&ic);
    if (st || oval.rank < 0 || oval.dtype != IB_DTYPE_FLOAT32) {
        fprintf(stderr, "kernel harness: infer of %s failed: %s\n", ib__op_name(op),
                st ? ib_last_error() : "no float32 output");
        return NULL;
    }
    kh_val *o = new_val(b, oval.rank, oval.dims);
    if (!o) return NULL;
    o->v.producer = n;
    outs[0] = &o->v;
    ib_tensor *tout[1] = {&o->t};
    ib__run_ctx rc = {n, opset, n_in, tin, 1, tout, b->pool, NULL};
    st = def->run(&rc);
    if (st) {
        fprintf(stderr, "kernel harness: reference %s failed: %s\n", ib__op_name(op),
                ib_last_error());
        return NULL;
    }
    return &o->v;
}

/* ---- layouts --------------------------------------------------------------------- */

void ib_kh_to_nchwc(const float *plain, const int64_t *dims, int32_t bl, float *blocked) {
    int64_t N = dims[0], C = dims[1], HW = dims[2] * dims[3], CB = (C + bl - 1) / bl;
    for (int64_t n = 0; n < N; n++)
        for (int64_t cb = 0; cb < CB; cb++)
            for (int64_t p = 0; p < HW; p++)
                for (int32_t l = 0; l < bl; l++) {
                    int64_t c = cb * bl + l;
                    blocked[((n * CB + cb) * HW + p) * bl + l] =
                        c < C ? plain[(n * C + c) * HW + p] : 0.0f;
                }
}

void ib_kh_from_nchwc(const float *blocked, const int64_t *dims, int32_t bl, float *plain) {
    int64_t N = dims[0], C = dims[1], HW = dims[2] * dims[3], CB = (C + bl - 1) / bl;
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t p = 0; p < HW; p++)
                plain[(n * C + c) * HW + p] = blocked[((n * CB + c / bl) * HW + p) * bl + c % bl];
}

/* ---- plan building ------------------------------------------------------------------ */

static ib_status add_value_buf(ib__plan *plan, const ib__value *v, ib__buf_kind kind,
                               ib__layout layout, int32_t block, int32_t *id) {
    ib__pbuf pb;
    memset(&pb, 0, sizeof pb);
    pb.kind = kind;
    pb.dtype = IB_DTYPE_FLOAT32;
    pb.rank = v->rank;
    for (int32_t d = 0; d < v->rank; d++) pb.dims[d] = v->dims[d];
    pb.layout = (v->rank == 4) ? layout : IB_LAYOUT_PLAIN;
    pb.block = pb.layout == IB_LAYOUT_NCHWC ? block : 0;
    pb.value = v;
    pb.alias_of = -1;
    if (kind == IB_BUF_WEIGHT) {
        const kh_val *kv = (const kh_val *)v;
        return ib__plan_add_weight(plan, &pb, kv->data, (size_t)kv->count * sizeof(float), id);
    }
    return ib__plan_add_buf(plan, &pb, id);
}

static ib_status const_scalar(const ib__value *v, float dflt, float *out) {
    if (!v) {
        *out = dflt;
        return IB_OK;
    }
    if (!v->constant || ((const kh_val *)v)->count != 1)
        return ib__error(IB_ERR_UNSUPPORTED, "epilogue parameter is not a constant scalar");
    *out = ((const kh_val *)v)->data[0];
    return IB_OK;
}

/* Translates element-wise node `n` (chain input `prev`) into an epilogue step. */
static ib_status make_step(ib__plan *plan, const ib__node *n, const ib__value *prev,
                           const ib__value *out, ib__layout out_layout, int32_t block,
                           ib__epilogue_step *e) {
    memset(e, 0, sizeof *e);
    e->op = n->op;
    e->operand_buf = -1;
    if (ib__epilogue_supports_op(n->op, IB_EPI_UNARY)) {
        e->kind = IB_EPI_UNARY;
        switch (n->op) {
        case IB_OP_LEAKY_RELU: IB_TRY(ib__attr_float(n, "alpha", 0.01f, &e->alpha)); break;
        case IB_OP_HARD_SIGMOID:
            IB_TRY(ib__attr_float(n, "alpha", 0.2f, &e->alpha));
            IB_TRY(ib__attr_float(n, "beta", 0.5f, &e->beta));
            break;
        case IB_OP_CLIP:
            if (n->opset < 11) {
                IB_TRY(ib__attr_float(n, "min", -FLT_MAX, &e->alpha));
                IB_TRY(ib__attr_float(n, "max", FLT_MAX, &e->beta));
            } else {
                IB_TRY(const_scalar(n->n_inputs > 1 ? n->inputs[1] : NULL, -FLT_MAX, &e->alpha));
                IB_TRY(const_scalar(n->n_inputs > 2 ? n->inputs[2] : NULL, FLT_MAX, &e->beta));
            }
            break;
        default: break;
        }
        return IB_OK;
    }
    if (!ib__epilogue_supports_op(n->op, IB_EPI_BINARY) || n->n_inputs != 2)
        return ib__error(IB_ERR_UNSUPPORTED, "%s cannot be an epilogue", ib__node_label(n));
    e->kind = IB_EPI_BINARY;
    int32_t oi = n->inputs[0] == prev ? 1 : 0;
    e->operand_first = oi == 0;
    const ib__value *opnd = n->inputs[oi];
    const kh_val *ko = (const kh_val *)opnd;
    bool same = opnd->rank == out->rank;
    for (int32_t d = 0; same && d < out->rank; d++) same = opnd->dims[d] == out->dims[d];
    if (ko->count == 1) {
        e->operand_kind = IB_EPI_SCALAR;
    } else if (same) {
        e->operand_kind = IB_EPI_FULL;
    } else if (out->rank == 4 && ko->count == out->dims[1] &&
               (opnd->rank == 3 || opnd->rank == 4) &&
               opnd->dims[opnd->rank - 3] == out->dims[1]) {
        e->operand_kind = IB_EPI_PER_CHANNEL;
    } else if (out->rank >= 1 && out->rank != 4 && opnd->rank == 1 &&
               ko->count == out->dims[out->rank - 1]) {
        e->operand_kind = IB_EPI_PER_CHANNEL; /* a bias over the last dim (Gemm/MatMul) */
    } else {
        return ib__error(IB_ERR_UNSUPPORTED, "%s: operand shape not scalar/per-channel/full",
                         ib__node_label(n));
    }
    ib__layout lay = e->operand_kind == IB_EPI_FULL ? out_layout : IB_LAYOUT_PLAIN;
    return add_value_buf(plan, opnd, opnd->constant ? IB_BUF_WEIGHT : IB_BUF_INPUT, lay, block,
                         &e->operand_buf);
}

static ib_status build_case(ib_kh_batch *b, const ib_kh_spec *s, ib__plan **out_plan,
                            int32_t *out_buf) {
    if (!s->last || s->n_nodes < 0 || s->n_nodes > 10)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "bad spec");
    const ib__node *chain[10];
    const ib__value *v = s->last;
    for (int32_t i = s->n_nodes - 1; i >= 0; i--) {
        if (!v->producer) return ib__error(IB_ERR_INVALID_ARGUMENT, "chain shorter than n_nodes");
        chain[i] = v->producer;
        if (i == 0) break;
        /* the chain input is the first non-constant input */
        const ib__value *next = NULL;
        for (int32_t j = 0; j < chain[i]->n_inputs && !next; j++)
            if (chain[i]->inputs[j] && !chain[i]->inputs[j]->constant &&
                chain[i]->inputs[j]->producer)
                next = chain[i]->inputs[j];
        if (!next) return ib__error(IB_ERR_INVALID_ARGUMENT, "broken chain");
        v = next;
    }
    int32_t block = s->block ? s->block : ib_kh_block(b);
    ib__plan *plan = NULL;
    IB_TRY(ib__plan_create(NULL, &b->target, &plan));
    ib__pkernel k;
    memset(&k, 0, sizeof k);
    ib_status st = IB_OK;
    if (s->n_nodes == 0) {
        k.n_nodes = 0;
        st = add_value_buf(plan, s->last, IB_BUF_INPUT, s->in_layout, block, &k.in[0]);
        if (!st) k.n_in = 1;
    } else {
        const ib__node **nodes = ib__arena_alloc(plan->arena, sizeof(*nodes) * (size_t)s->n_nodes);
        if (!nodes) st = IB_ERR_OUT_OF_MEMORY;
        for (int32_t i = 0; !st && i < s->n_nodes; i++) nodes[i] = chain[i];
        k.n_nodes = s->n_nodes;
        k.nodes = nodes;
        const ib__node *a = chain[0];
        for (int32_t j = 0; !st && j < a->n_inputs; j++) {
            const ib__value *iv = a->inputs[j];
            if (!iv) {
                k.in[k.n_in++] = -1;
                continue;
            }
            st = add_value_buf(plan, iv, iv->constant ? IB_BUF_WEIGHT : IB_BUF_INPUT,
                               s->in_layout, block, &k.in[k.n_in]);
            k.n_in++;
        }
        int32_t first_epi = (s->n_nodes > 1 && chain[1]->op == IB_OP_BATCH_NORMALIZATION) ? 2 : 1;
        for (int32_t i = first_epi; !st && i < s->n_nodes; i++) {
            if (k.n_epi >= IB_MAX_EPILOGUE) {
                st = ib__error(IB_ERR_UNSUPPORTED, "too many epilogue steps");
                break;
            }
            st = make_step(plan, chain[i], chain[i - 1]->outputs[0], s->last, s->out_layout,
                           block, &k.epi[k.n_epi]);
            if (!st) k.n_epi++;
        }
    }
    if (!st) {
        st = add_value_buf(plan, s->last, IB_BUF_OUTPUT, s->out_layout, block, &k.out[0]);
        k.n_out = 1;
        *out_buf = k.out[0];
    }
    if (!st) {
        k.tmpl = s->tmpl;
        int32_t id;
        st = ib__plan_add_kernel(plan, &k, &id);
    }
    if (st) {
        ib__plan_destroy(plan);
        return st;
    }
    *out_plan = plan;
    return IB_OK;
}

bool ib_kh_supported(ib_kh_batch *b, const ib_kh_spec *spec) {
    ib__plan *plan;
    int32_t ob;
    if (build_case(b, spec, &plan, &ob)) return false;
    bool ok = spec->tmpl->supports(plan, &plan->kernels[0]);
    ib__plan_destroy(plan);
    return ok;
}

int32_t ib_kh_add(ib_kh_batch *b, const ib_kh_spec *spec, const char *label) {
    if (b->n_cases >= KH_MAX_CASES) return -1;
    ib__plan *plan;
    int32_t ob;
    ib_status st = build_case(b, spec, &plan, &ob);
    if (st) {
        fprintf(stderr, "  [%s] %s: cannot build the case: %s\n", b->target.name, label,
                ib_last_error());
        return -1;
    }
    ib__pkernel *k = &plan->kernels[0];
    const ib__kernel_template *t = spec->tmpl;
    int32_t idx = b->n_cases;
    snprintf(k->fn_name, sizeof k->fn_name, "kh_case%d", (int)idx);
    if (!t->supports(plan, k)) {
        fprintf(stderr, "  [%s] %s: %s does not support it\n", b->target.name, label, t->name);
        ib__plan_destroy(plan);
        return -1;
    }
    if (t->default_knobs) t->default_knobs(plan, k, &k->knobs);
    for (int32_t i = 0; i < spec->n_knobs && i < 8; i++)
        ib__knobs_set(&k->knobs, spec->knob_name[i], spec->knob_value[i]);
    if (t->knobs_valid && !t->knobs_valid(plan, k, &k->knobs)) {
        fprintf(stderr, "  [%s] %s: knobs refused\n", b->target.name, label);
        ib__plan_destroy(plan);
        return -1;
    }
    if (t->pack_weights && (st = t->pack_weights(plan, k)) != IB_OK) {
        fprintf(stderr, "  [%s] %s: pack_weights: %s\n", b->target.name, label, ib_last_error());
        ib__plan_destroy(plan);
        return -1;
    }
    ib__sb_printf(&b->unit, "\n/* case %d: %s */\n", (int)idx, label);
    if ((st = t->emit(plan, k, &b->unit)) != IB_OK) {
        fprintf(stderr, "  [%s] %s: emit: %s\n", b->target.name, label, ib_last_error());
        ib__plan_destroy(plan);
        return -1;
    }
    kh_case *c = &b->cases[b->n_cases++];
    c->plan = plan;
    c->out_buf = ob;
    c->want = (const kh_val *)spec->last;
    snprintf(c->label, sizeof c->label, "%s", label);
    return idx;
}

/* ---- units ------------------------------------------------------------------------ */

extern char **environ;

#define KH_SYSROOT "/usr/aarch64-linux-gnu"

static bool on_path(const char *prog) {
    const char *path = getenv("PATH");
    char dir[4096];
    while (path && *path) {
        size_t n = strcspn(path, ":");
        if (n > 0 && n < sizeof dir - 64) {
            snprintf(dir, sizeof dir, "%.*s/%s", (int)n, path, prog);
            if (access(dir, X_OK) == 0) return true;
        }
        path += n + (path[n] == ':');
    }
    return false;
}

bool ib_kh_emulated(const ib__target *t) {
    return !t->is_host && t->arch == IB_ARCH_AARCH64 && on_path("qemu-aarch64") &&
           on_path(t->cc) && access(KH_SYSROOT "/lib/ld-linux-aarch64.so.1", R_OK) == 0;
}

bool ib_kh_can_run(const ib__target *t) { return t->is_host || ib_kh_emulated(t); }

/* Runs argv (no shell) with its output in `log`; true when it exits 0. */
static bool run_quiet(const char *const *argv, const char *log) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return false;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return false;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void print_log(const char *log) {
    FILE *f = fopen(log, "r");
    char line[512];
    for (int n = 0; f && n < 30 && fgets(line, sizeof line, f); n++) fprintf(stderr, "    %s", line);
    if (f) fclose(f);
}

/* The driver for emulated units, built once per process (per target compiler). */
static char g_driver_dir[64], g_driver[128], g_driver_cc[64];

static void remove_driver(void) {
    char p[200];
    unlink(g_driver);
    ib__toolchain_abi_include_remove(g_driver_dir);
    snprintf(p, sizeof p, "%s/driver.log", g_driver_dir);
    unlink(p);
    rmdir(g_driver_dir);
}

static const char *driver_for(const ib__target *t) {
    if (g_driver[0] && strcmp(g_driver_cc, t->cc) == 0) return g_driver;
    if (g_driver[0]) return NULL; /* one emulated compiler per process is all tests need */
    snprintf(g_driver_dir, sizeof g_driver_dir, "/tmp/ib_khd.XXXXXX");
    if (!mkdtemp(g_driver_dir)) return NULL;
    char out[128], log[128];
    snprintf(out, sizeof out, "%s/kernel_driver", g_driver_dir);
    snprintf(log, sizeof log, "%s/driver.log", g_driver_dir);
    const char *inc = ib__toolchain_abi_include_dir(g_driver_dir);
    const char *argv[] = {t->cc, "-std=c11", "-O1", "-I", inc, IB_SOURCE_DIR "/tests/kernel_driver.c",
                          "-o", out, "-ldl", NULL};
    snprintf(g_driver, sizeof g_driver, "%s", out);
    snprintf(g_driver_cc, sizeof g_driver_cc, "%s", t->cc);
    atexit(remove_driver);
    if (!inc || !run_quiet(argv, log)) {
        fprintf(stderr, "  [%s] cannot build the kernel driver:\n", t->name);
        print_log(log);
        g_driver[0] = '\0';
        g_driver_cc[0] = '\0';
        return NULL;
    }
    return g_driver;
}

struct ib_kh_unit {
    bool emulated;
    void *dl;
    int (*entry)(int32_t, const ib_kernel_abi *, void *const *);
    const char *driver;
    char so[256], entry_name[64], dir[64];
    int32_t calls;
};

ib_status ib_kh_unit_open(const ib__target *t, const char *so, const char *entry,
                          ib_kh_unit **out) {
    if (!ib_kh_can_run(t))
        return ib__error(IB_ERR_UNSUPPORTED, "code for %s cannot run here", t->name);
    ib_kh_unit *u = ib__calloc(1, sizeof *u);
    if (!u) return IB_ERR_OUT_OF_MEMORY;
    u->emulated = !t->is_host;
    snprintf(u->so, sizeof u->so, "%s", so);
    snprintf(u->entry_name, sizeof u->entry_name, "%s", entry);
    if (!u->emulated) {
        u->dl = dlopen(so, RTLD_NOW | RTLD_LOCAL);
        if (u->dl) *(void **)&u->entry = dlsym(u->dl, entry);
        if (!u->entry) {
            ib_status st = ib__error(IB_ERR_RUNTIME, "dlopen %s: %s", so, dlerror());
            ib_kh_unit_close(u);
            return st;
        }
    } else {
        snprintf(u->dir, sizeof u->dir, "/tmp/ib_khc.XXXXXX");
        u->driver = driver_for(t);
        if (!u->driver || !mkdtemp(u->dir)) {
            u->dir[0] = '\0';
            ib_kh_unit_close(u);
            return ib__error(IB_ERR_RUNTIME, "no kernel driver for %s", t->name);
        }
    }
    *out = u;
    return IB_OK;
}

bool ib_kh_unit_is_emulated(const ib_kh_unit *u) { return u->emulated; }

static int emulated_call(ib_kh_unit *u, int32_t idx, const ib_kernel_abi *abi, int32_t n_args,
                         void *const *args, const size_t *arg_bytes, int32_t out_arg) {
    char call[128], result[128], log[128];
    snprintf(call, sizeof call, "%s/call", u->dir);
    snprintf(result, sizeof result, "%s/result", u->dir);
    snprintf(log, sizeof log, "%s/log", u->dir);
    FILE *f = fopen(call, "wb");
    if (!f) return -1;
    uint32_t version = 1;
    int32_t hdr[4] = {idx, abi->num_threads, n_args, out_arg};
    bool ok = fwrite("IBKH", 1, 4, f) == 4 && fwrite(&version, 4, 1, f) == 1 &&
              fwrite(hdr, sizeof hdr, 1, f) == 1;
    for (int32_t i = 0; ok && i < n_args; i++) {
        int64_t n = args[i] ? (int64_t)arg_bytes[i] : -1;
        ok = fwrite(&n, 8, 1, f) == 1 && (n <= 0 || fwrite(args[i], 1, (size_t)n, f) == (size_t)n);
    }
    if (fclose(f) != 0) ok = false;
    const char *argv[] = {"qemu-aarch64", "-L", KH_SYSROOT, u->driver, u->so, u->entry_name,
                          call, result, NULL};
    unlink(result);
    if (!ok || !run_quiet(argv, log)) {
        fprintf(stderr, "  emulated call of case %d failed:\n", (int)idx);
        print_log(log);
        return -1;
    }
    int32_t rc = -1;
    f = fopen(result, "rb");
    if (!f || fread(&rc, 4, 1, f) != 1 ||
        fread(args[out_arg], 1, arg_bytes[out_arg], f) != arg_bytes[out_arg])
        rc = -1;
    if (f) fclose(f);
    return rc;
}

int ib_kh_unit_call(ib_kh_unit *u, int32_t idx, const ib_kernel_abi *abi, int32_t n_args,
                    void *const *args, const size_t *arg_bytes, int32_t out_arg) {
    u->calls++;
    if (!u->emulated) return u->entry(idx, abi, args);
    if (out_arg < 0 || out_arg >= n_args || !args[out_arg]) return -1;
    return emulated_call(u, idx, abi, n_args, args, arg_bytes, out_arg);
}

bool ib_kh_pick_targets(int argc, char **argv, const char *const *dflt, size_t n_dflt,
                        const char *const **targets, size_t *n_targets) {
    if (argc < 2) {
        *targets = dflt;
        *n_targets = n_dflt;
        return true;
    }
    for (int i = 1; i < argc; i++) {
        ib__target t;
        if (ib__target_resolve(argv[i], &t) != IB_OK) {
            fprintf(stderr, "%s\n", ib_last_error());
            return false;
        }
        if (!ib_kh_can_run(&t)) {
            fprintf(stderr, "cannot run code for target %s here: it needs %s and qemu-aarch64 "
                    "with the sysroot %s (Debian gcc-aarch64-linux-gnu, qemu-user, "
                    "libc6-dev-arm64-cross; `make deps` installs them)\n",
                    argv[i], t.cc, KH_SYSROOT);
            return false;
        }
    }
    *targets = (const char *const *)(argv + 1);
    *n_targets = (size_t)(argc - 1);
    return true;
}

void ib_kh_unit_close(ib_kh_unit *u) {
    if (!u) return;
    if (u->dl) dlclose(u->dl);
    if (u->dir[0]) {
        const char *names[] = {"call", "result", "log"};
        char p[128];
        for (int i = 0; i < 3; i++) {
            snprintf(p, sizeof p, "%s/%s", u->dir, names[i]);
            unlink(p);
        }
        rmdir(u->dir);
    }
    ib__free(u);
}

/* ---- running ------------------------------------------------------------------------ */

static void kh_parallel_for(void *pool, int64_t n, ib_kernel_range_fn fn, void *ctx) {
    ib__parallel_for(pool, n, fn, ctx);
}

static int kh_fallback(void *user, int32_t step, void *const *buffers) {
    (void)user;
    (void)step;
    (void)buffers;
    return 1; /* a template kernel never falls back */
}

/* Physical buffer for a plan buffer holding value data (INPUT), or garbage (OUTPUT). */
static float *materialise(const ib__pbuf *pb, bool fill) {
    size_t nb = ib__pbuf_physical_bytes(pb);
    float *p = ib__aligned_alloc(nb + 64);
    if (!p) return NULL;
    if (!fill) {
        for (size_t i = 0; i < nb / sizeof(float); i++) p[i] = NAN;
        return p;
    }
    const kh_val *kv = (const kh_val *)pb->value;
    if (pb->layout == IB_LAYOUT_NCHWC)
        ib_kh_to_nchwc(kv->data, pb->dims, pb->block, p);
    else
        memcpy(p, kv->data, (size_t)kv->count * sizeof(float));
    return p;
}

/* Compares a case's output buffer (physical layout) with the reference; NULL fails. */
static bool check_output(ib_kh_batch *b, kh_case *c, const float *outp, double tol) {
    const ib__plan *plan = c->plan;
    bool ok = outp != NULL;
    const ib__pbuf *ob = &plan->bufs[c->out_buf];
    const kh_val *want = c->want;
    float *got = ib__malloc((size_t)(want->count ? want->count : 1) * sizeof(float));
    if (ok && got) {
        if (ob->layout == IB_LAYOUT_NCHWC) {
            ib_kh_from_nchwc(outp, ob->dims, ob->block, got);
            int64_t N = ob->dims[0], C = ob->dims[1], HW = ob->dims[2] * ob->dims[3];
            int64_t CB = (C + ob->block - 1) / ob->block;
            for (int64_t n = 0; n < N && ok; n++)
                for (int64_t p = 0; p < HW && ok; p++)
                    for (int64_t ch = C; ch < CB * ob->block; ch++) {
                        float x = outp[((n * CB + ch / ob->block) * HW + p) * ob->block +
                                       ch % ob->block];
                        if (!isfinite(x)) {
                            fprintf(stderr, "  [%s] %s: padding channel %lld not finite\n",
                                    b->target.name, c->label, (long long)ch);
                            ok = false;
                            break;
                        }
                    }
        } else {
            memcpy(got, outp, (size_t)want->count * sizeof(float));
        }
        double worst = 0;
        int64_t wi = 0;
        for (int64_t i = 0; i < want->count; i++) {
            double w = want->data[i], g = got[i];
            double e = fabs(g - w) / fmax(1.0, fabs(w));
            if (!(e <= worst)) { /* NaN counts as worst */
                worst = isnan(e) ? INFINITY : e;
                wi = i;
            }
        }
        if (!(worst <= tol)) {
            fprintf(stderr, "  [%s] %s: max rel error %g at %lld (got %g want %g)\n",
                    b->target.name, c->label, worst, (long long)wi, (double)got[wi],
                    (double)want->data[wi]);
            ok = false;
        }
    } else if (ok) {
        ok = false;
    }
    ib__free(got);
    return ok;
}

static bool run_case(ib_kh_batch *b, kh_case *c, ib_kh_unit *unit, int32_t idx, double tol) {
    ib__plan *plan = c->plan;
    const ib__pkernel *k = &plan->kernels[0];
    void *args[3 * IB_MAX_KERNEL_ARGS];
    size_t bytes[3 * IB_MAX_KERNEL_ARGS];
    float *owned[3 * IB_MAX_KERNEL_ARGS];
    int32_t n_args = 0, n_owned = 0, out_arg = -1;
    bool ok = true;
    int32_t ids[3 * IB_MAX_KERNEL_ARGS];
    for (int32_t i = 0; i < k->n_in; i++) ids[n_args++] = k->in[i];
    for (int32_t i = 0; i < k->n_out; i++) ids[n_args++] = k->out[i];
    /* epilogue operands are args[first + step]: unary steps hold a NULL slot */
    for (int32_t i = 0; i < k->n_epi; i++) ids[n_args++] = k->epi[i].operand_buf;
    float *outp = NULL;
    for (int32_t i = 0; i < n_args; i++) {
        args[i] = NULL;
        bytes[i] = 0;
        if (ids[i] < 0) continue;
        const ib__pbuf *pb = &plan->bufs[ids[i]];
        if (pb->kind == IB_BUF_WEIGHT) {
            args[i] = plan->weights + pb->offset;
            bytes[i] = plan->weights_bytes - (size_t)pb->offset;
        } else {
            float *p = materialise(pb, pb->kind == IB_BUF_INPUT);
            if (!p) return false;
            owned[n_owned++] = p;
            args[i] = p;
            bytes[i] = ib__pbuf_physical_bytes(pb);
            if (ids[i] == c->out_buf) {
                outp = p;
                out_arg = i;
            }
        }
    }
    ib_kernel_abi abi;
    memset(&abi, 0, sizeof abi);
    abi.version = IB_KERNEL_ABI_VERSION;
    abi.num_threads = ib__pool_size(b->pool);
    abi.parallel_for = kh_parallel_for;
    abi.pool = b->pool;
    abi.fallback = kh_fallback;
    int rc = ib_kh_unit_call(unit, idx, &abi, n_args, args, bytes, out_arg);
    if (rc != 0) {
        fprintf(stderr, "  [%s] %s: kernel returned %d\n", b->target.name, c->label, rc);
        ok = false;
    }
    /* IB_KH_BENCH=<ms>: time the kernel for about that long (for tuning by hand) */
    const char *bench = getenv("IB_KH_BENCH");
    if (ok && bench && atoi(bench) > 0 && !ib_kh_unit_is_emulated(unit)) {
        /* wall time, and process CPU time per thread: the second is what a shared,
         * busy machine does not distort */
        double budget = atoi(bench) * 1e-3, best = 1e30, best_cpu = 1e30, spent = 0;
        int threads = ib__pool_size(b->pool) > 0 ? ib__pool_size(b->pool) : 1;
        while (spent < budget) {
            struct timespec t0, t1, c0, c1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
            ib_kh_unit_call(unit, idx, &abi, n_args, args, bytes, out_arg);
            clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
            double dc = (double)(c1.tv_sec - c0.tv_sec) + 1e-9 * (double)(c1.tv_nsec - c0.tv_nsec);
            spent += dt;
            if (dt < best) best = dt;
            if (dc / threads < best_cpu) best_cpu = dc / threads;
        }
        double fl = k->tmpl->flops ? k->tmpl->flops(plan, k) : 0;
        printf("  bench [%s] %s: %.3f ms, %.1f GFLOP/s; per-thread CPU %.3f ms, %.1f GFLOP/s\n",
               b->target.name, c->label, best * 1e3, fl / best * 1e-9, best_cpu * 1e3,
               fl / best_cpu * 1e-9);
    }
    ok = check_output(b, c, ok ? outp : NULL, tol);
    for (int32_t i = 0; i < n_owned; i++) ib__aligned_free(owned[i]);
    return ok;
}

/* A case on the GPU: the same buffers as run_case, uploaded, the kernel launched with its
 * template's launch dims, the output read back. */
static bool run_case_cuda(ib_kh_batch *b, kh_case *c, const void *fatbin, double tol) {
    ib__plan *plan = c->plan;
    const ib__pkernel *k = &plan->kernels[0];
    ib__cuda_kernel_arg args[3 * IB_MAX_KERNEL_ARGS];
    float *owned[3 * IB_MAX_KERNEL_ARGS];
    int32_t ids[3 * IB_MAX_KERNEL_ARGS], n_args = 0, n_owned = 0;
    for (int32_t i = 0; i < k->n_in; i++) ids[n_args++] = k->in[i];
    for (int32_t i = 0; i < k->n_out; i++) ids[n_args++] = k->out[i];
    for (int32_t i = 0; i < k->n_epi; i++) ids[n_args++] = k->epi[i].operand_buf;
    float *outp = NULL;
    bool ok = true;
    for (int32_t i = 0; i < n_args && ok; i++) {
        memset(&args[i], 0, sizeof args[i]);
        if (ids[i] < 0) continue;
        const ib__pbuf *pb = &plan->bufs[ids[i]];
        if (pb->kind == IB_BUF_WEIGHT) {
            args[i].host = plan->weights + pb->offset;
            args[i].nbytes = pb->nbytes;
            continue;
        }
        float *p = materialise(pb, pb->kind == IB_BUF_INPUT);
        if (!p) {
            ok = false;
            break;
        }
        owned[n_owned++] = p;
        args[i].host = p;
        args[i].nbytes = ib__pbuf_physical_bytes(pb);
        args[i].read_back = ids[i] == c->out_buf;
        if (ids[i] == c->out_buf) outp = p;
    }
    ib__launch_dims ld;
    if (ok && k->tmpl->launch(plan, k, &ld) != IB_OK) {
        fprintf(stderr, "  [%s] %s: launch: %s\n", b->target.name, c->label, ib_last_error());
        ok = false;
    }
    if (ok && ib__cuda_run_kernel(fatbin, k->fn_name, &ld, n_args, args, 0) != IB_OK) {
        fprintf(stderr, "  [%s] %s: %s\n", b->target.name, c->label, ib_last_error());
        ok = false;
    }
    ok = check_output(b, c, ok ? outp : NULL, tol);
    for (int32_t i = 0; i < n_owned; i++) ib__aligned_free(owned[i]);
    return ok;
}

/* The CUDA batch: one nvcc run for sm_80 and sm_90 over every case, then each case on the
 * GPU when one is present. */
static int32_t run_cuda(ib_kh_batch *b, double tol) {
    int32_t n = b->n_cases, failed = 0;
    char dir[] = "/tmp/ib_kh_cuda.XXXXXX", src[256], fb[256];
    if (ib__sb_status(&b->unit) || !mkdtemp(dir)) return n;
    snprintf(src, sizeof src, "%s/unit%d.cu", dir, (int)b->n_units);
    snprintf(fb, sizeof fb, "%s/unit%d.fatbin", dir, (int)b->n_units);
    b->n_units++;
    FILE *f = fopen(src, "w");
    bool written = f && fwrite(b->unit.data, 1, b->unit.len, f) == b->unit.len;
    if (f) fclose(f);
    const int32_t sms[2] = {80, 90};
    ib_status built = written ? ib__toolchain_build_cuda(src, sms, 2, fb) : IB_ERR_IO;
    unsigned char *image = NULL;
    if (built != IB_OK) {
        fprintf(stderr, "  [%s] nvcc failed: %s\n", b->target.name, ib_last_error());
        if (getenv("IB_KH_KEEP")) fprintf(stderr, "  source kept: %s\n", src);
        failed = n;
    } else if (b->compile_only) {
        printf("  [%s] %d kernels compiled for sm_80 and sm_90 by nvcc, not run: %s\n",
               b->target.name, (int)n, b->no_run_reason);
    } else {
        FILE *g = fopen(fb, "rb");
        long size = -1;
        if (g && fseek(g, 0, SEEK_END) == 0) size = ftell(g);
        if (g && size > 0 && fseek(g, 0, SEEK_SET) == 0 && (image = ib__aligned_alloc((size_t)size))) {
            if (fread(image, 1, (size_t)size, g) != (size_t)size) {
                ib__aligned_free(image);
                image = NULL;
            }
        }
        if (g) fclose(g);
        if (!image) failed = n;
        for (int32_t i = 0; image && i < n; i++)
            if (!run_case_cuda(b, &b->cases[i], image, tol)) failed++;
        if (image) printf("  [%s] %d kernels run on the GPU, %d failed\n", b->target.name, (int)n, (int)failed);
    }
    ib__aligned_free(image);
    if (getenv("IB_KH_KEEP")) {
        fprintf(stderr, "  kept %s\n", src);
    } else {
        unlink(src);
        unlink(fb);
        char log[300];
        snprintf(log, sizeof log, "%s.log", fb);
        unlink(log);
        rmdir(dir);
    }
    clear_cases(b);
    return failed;
}

bool ib_kh_compile_only(const ib_kh_batch *b, const char **why) {
    if (why) *why = b->no_run_reason[0] ? b->no_run_reason : "this machine cannot run the target";
    return b->compile_only;
}

int32_t ib_kh_run(ib_kh_batch *b, double tol) {
    int32_t n = b->n_cases, failed = 0;
    if (n == 0) return 0;
    if (ib__target_is_cuda(&b->target)) return run_cuda(b, tol);
    ib__sb_printf(&b->unit, "\n__attribute__((visibility(\"default\"))) int test_entry(int idx, "
                            "const ib_kernel_abi *abi, void *const *args) {\n  switch (idx) {\n");
    for (int32_t i = 0; i < n; i++)
        ib__sb_printf(&b->unit, "  case %d: return %s(abi, args);\n", (int)i,
                      b->cases[i].plan->kernels[0].fn_name);
    ib__sb_printf(&b->unit, "  }\n  return -1;\n}\n");
    char dir[] = "/tmp/ib_kh.XXXXXX";
    char src[256], so[256];
    ib_kh_unit *unit = NULL;
    if (ib__sb_status(&b->unit) || !mkdtemp(dir)) {
        fprintf(stderr, "  [%s] cannot write the unit\n", b->target.name);
        failed = n;
        goto done;
    }
    snprintf(src, sizeof src, "%s/unit%d.c", dir, (int)b->n_units);
    snprintf(so, sizeof so, "%s/unit%d.so", dir, (int)b->n_units);
    b->n_units++;
    FILE *f = fopen(src, "w");
    if (!f || fwrite(b->unit.data, 1, b->unit.len, f) != b->unit.len) {
        if (f) fclose(f);
        failed = n;
        goto done;
    }
    fclose(f);
    const char *srcs[1] = {src};
    ib_status built = ib__toolchain_build_shared(&b->target, 1, srcs,
                                                 ib__toolchain_abi_include_dir(dir), so, 1);
    if (built != IB_OK) {
        /* One retry: under heavy load a compiler run has failed once without a message
         * (seen in CI-like runs); a real error in the generated code fails again. */
        fprintf(stderr, "  [%s] build failed, retrying once: %s\n", b->target.name,
                ib_last_error());
        built = ib__toolchain_build_shared(&b->target, 1, srcs, ib__toolchain_abi_include_dir(dir),
                                           so, 1);
    }
    if (built != IB_OK) {
        fprintf(stderr, "  [%s] build failed: %s\n", b->target.name, ib_last_error());
        if (getenv("IB_KH_KEEP")) fprintf(stderr, "  source kept: %s\n", src);
        failed = n;
        goto done;
    }
    if (b->compile_only) {
        printf("  [%s] %d kernels compiled, not run (this machine cannot execute them)\n",
               b->target.name, (int)n);
        goto done;
    }
    if (ib_kh_unit_open(&b->target, so, "test_entry", &unit) != IB_OK) {
        fprintf(stderr, "  [%s] %s\n", b->target.name, ib_last_error());
        failed = n;
        goto done;
    }
    for (int32_t i = 0; i < n; i++)
        if (!run_case(b, &b->cases[i], unit, i, tol)) failed++;
    if (ib_kh_unit_is_emulated(unit))
        printf("  [%s] %d kernels run under qemu-aarch64, %d failed\n", b->target.name, (int)n,
               (int)failed);
done:
    ib_kh_unit_close(unit);
    if (getenv("IB_KH_KEEP")) {
        fprintf(stderr, "  kept %s\n", src);
    } else {
        unlink(src);
        unlink(so);
        char log[300];
        snprintf(log, sizeof log, "%s.log", so);
        unlink(log);
        ib__toolchain_abi_include_remove(dir);
        rmdir(dir);
    }
    clear_cases(b);
    return failed;
}
