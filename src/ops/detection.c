/* Object-detection ops: NonMaxSuppression and RoiAlign — shape rules and reference
 * kernels following the ONNX reference (and ONNX Runtime) semantics. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"

/* ---- NonMaxSuppression -------------------------------------------------------------- */

typedef struct nms_params {
    int64_t max_out;
    double iou, score;
    bool has_score;
    bool center;
} nms_params;

/* Reads the optional scalar inputs 2..4 (tensors may be NULL) and the attribute. */
static ib_status nms_params_read(const ib__node *node, const ib_tensor *max_t,
                                 const ib_tensor *iou_t, const ib_tensor *score_t,
                                 nms_params *p) {
    int64_t center;
    IB_TRY(ib__attr_int(node, "center_point_box", 0, &center));
    if (center != 0 && center != 1)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: center_point_box must be 0 or 1, got %lld",
                         ib__node_label(node), (long long)center);
    p->center = center != 0;
    p->max_out = 0;
    p->iou = 0.0;
    p->score = 0.0;
    p->has_score = false;
    const ib_tensor *ts[3] = {max_t, iou_t, score_t};
    static const char *const names[3] = {"max_output_boxes_per_class", "iou_threshold",
                                         "score_threshold"};
    for (int i = 0; i < 3; i++) {
        const ib_tensor *t = ts[i];
        if (!t) continue;
        int64_t n = ib_tensor_element_count(t);
        if (n == 0) continue; /* an empty tensor reads as omitted */
        if (n != 1 || t->rank > 1)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: input '%s' must hold a single value",
                             ib__node_label(node), names[i]);
        if (i == 0) {
            if (!ib__dtype_is_integer(t->dtype))
                return ib__error(IB_ERR_INVALID_MODEL, "%s: input '%s' must be int64",
                                 ib__node_label(node), names[i]);
            p->max_out = ib__load_i64(t->data, t->dtype, 0);
            if (p->max_out < 0) p->max_out = 0;
        } else {
            if (!ib__dtype_is_float(t->dtype))
                return ib__error(IB_ERR_INVALID_MODEL, "%s: input '%s' must be float",
                                 ib__node_label(node), names[i]);
            double v = ib__load_f64(t->data, t->dtype, 0);
            if (i == 1) p->iou = v;
            else {
                p->score = v;
                p->has_score = true;
            }
        }
    }
    if (!(p->iou >= 0.0 && p->iou <= 1.0))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: iou_threshold %g must be in [0, 1]",
                         ib__node_label(node), p->iou);
    return IB_OK;
}

static ib_status nms_check_shapes(const ib__node *node, int32_t b_rank, const int64_t *b,
                                  int32_t s_rank, const int64_t *s) {
    if (b_rank >= 0 && (b_rank != 3 || (b[2] >= 0 && b[2] != 4)))
        return ib__error(IB_ERR_SHAPE, "%s: boxes must have shape [batches, boxes, 4]",
                         ib__node_label(node));
    if (s_rank >= 0 && s_rank != 3)
        return ib__error(IB_ERR_SHAPE, "%s: scores must have shape [batches, classes, boxes]",
                         ib__node_label(node));
    if (b_rank == 3 && s_rank == 3) {
        if (b[0] >= 0 && s[0] >= 0 && b[0] != s[0])
            return ib__error(IB_ERR_SHAPE, "%s: boxes have %lld batches, scores %lld",
                             ib__node_label(node), (long long)b[0], (long long)s[0]);
        if (b[1] >= 0 && s[2] >= 0 && b[1] != s[2])
            return ib__error(IB_ERR_SHAPE, "%s: %lld boxes but scores for %lld",
                             ib__node_label(node), (long long)b[1], (long long)s[2]);
    }
    return IB_OK;
}

typedef struct nms_cand {
    double score;
    int64_t index;
} nms_cand;

/* Highest score first; ties keep the lower box index first. */
static int nms_cmp(const void *pa, const void *pb) {
    const nms_cand *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

/* Box as (ymin, xmin, ymax, xmax). */
static void nms_box(const ib_tensor *boxes, int64_t at, bool center, double *o) {
    double v[4];
    for (int k = 0; k < 4; k++) v[k] = ib__load_f64(boxes->data, boxes->dtype, at + k);
    if (center) { /* x_center, y_center, width, height */
        o[0] = v[1] - v[3] / 2;
        o[2] = v[1] + v[3] / 2;
        o[1] = v[0] - v[2] / 2;
        o[3] = v[0] + v[2] / 2;
    } else { /* y1, x1, y2, x2: either corner order */
        o[0] = fmin(v[0], v[2]);
        o[2] = fmax(v[0], v[2]);
        o[1] = fmin(v[1], v[3]);
        o[3] = fmax(v[1], v[3]);
    }
}

static bool nms_suppress(const double *a, const double *b, double threshold) {
    double iy0 = fmax(a[0], b[0]), iy1 = fmin(a[2], b[2]);
    double ix0 = fmax(a[1], b[1]), ix1 = fmin(a[3], b[3]);
    if (iy1 <= iy0 || ix1 <= ix0) return false;
    double inter = (iy1 - iy0) * (ix1 - ix0);
    double area_a = (a[2] - a[0]) * (a[3] - a[1]), area_b = (b[2] - b[0]) * (b[3] - b[1]);
    double uni = area_a + area_b - inter;
    if (area_a <= 0 || area_b <= 0 || uni <= 0) return false;
    return inter / uni > threshold;
}

/* Runs the selection; writes triples to `out` (when not NULL) and their count. */
static ib_status nms_compute(const ib__node *node, const ib_tensor *boxes,
                             const ib_tensor *scores, const nms_params *p, int64_t *out,
                             int64_t *count) {
    int64_t batches = boxes->shape[0], n = boxes->shape[1], classes = scores->shape[1];
    *count = 0;
    if (p->max_out == 0 || n == 0) return IB_OK;
    size_t bytes = (size_t)n * (sizeof(nms_cand) + 4 * sizeof(double) + sizeof(int64_t));
    char *mem = ib__aligned_alloc(bytes);
    if (!mem) return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(node));
    nms_cand *cand = (nms_cand *)mem;
    double *sel_box = (double *)(mem + (size_t)n * sizeof(nms_cand));
    int64_t total = 0;
    for (int64_t b = 0; b < batches; b++)
        for (int64_t cl = 0; cl < classes; cl++) {
            int64_t nc = 0;
            int64_t sbase = (b * classes + cl) * n;
            for (int64_t i = 0; i < n; i++) {
                double s = ib__load_f64(scores->data, scores->dtype, sbase + i);
                if (p->has_score && !(s > p->score)) continue;
                cand[nc].score = s;
                cand[nc++].index = i;
            }
            qsort(cand, (size_t)nc, sizeof *cand, nms_cmp);
            int64_t n_sel = 0;
            for (int64_t k = 0; k < nc && n_sel < p->max_out; k++) {
                double box[4];
                nms_box(boxes, (b * n + cand[k].index) * 4, p->center, box);
                bool keep = true;
                for (int64_t s = 0; s < n_sel && keep; s++)
                    if (nms_suppress(sel_box + s * 4, box, p->iou)) keep = false;
                if (!keep) continue;
                memcpy(sel_box + n_sel * 4, box, sizeof box);
                n_sel++;
                if (out) {
                    out[total * 3 + 0] = b;
                    out[total * 3 + 1] = cl;
                    out[total * 3 + 2] = cand[k].index;
                }
                total++;
            }
        }
    ib__aligned_free(mem);
    *count = total;
    return IB_OK;
}

static ib_status nms_check_tensors(const ib__node *node, const ib_tensor *boxes,
                                   const ib_tensor *scores) {
    IB_TRY(nms_check_shapes(node, boxes->rank, boxes->shape, scores->rank, scores->shape));
    if (!ib__dtype_is_float(boxes->dtype) || !ib__dtype_is_float(scores->dtype))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: boxes and scores must be float",
                         ib__node_label(node));
    return IB_OK;
}

static ib_status infer_nms(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    IB_TRY(ib__require_input(c, 1));
    const ib__value *b = c->in[0], *s = c->in[1];
    IB_TRY(nms_check_shapes(c->node, b->rank, b->dims, s->rank, s->dims));
    int64_t dims[2] = {-1, 3};
    bool all_known = b->constant && s->constant;
    for (int32_t i = 2; i < 5; i++) {
        const ib__value *v = ib__in(c, i);
        if (v && !v->constant) all_known = false;
    }
    if (all_known) { /* at run time: the selection decides the output size */
        const ib__value *m = ib__in(c, 2), *iou = ib__in(c, 3), *sc = ib__in(c, 4);
        nms_params p;
        IB_TRY(nms_check_tensors(c->node, b->constant, s->constant));
        IB_TRY(nms_params_read(c->node, m ? m->constant : NULL, iou ? iou->constant : NULL,
                               sc ? sc->constant : NULL, &p));
        IB_TRY(nms_compute(c->node, b->constant, s->constant, &p, NULL, &dims[0]));
    }
    ib__set_output(c, 0, IB_DTYPE_INT64, 2, dims);
    return IB_OK;
}

static ib_status run_nms(ib__run_ctx *c) {
    const ib_tensor *b = c->in[0], *s = c->in[1];
    IB_TRY(nms_check_tensors(c->node, b, s));
    nms_params p;
    IB_TRY(nms_params_read(c->node, c->n_in > 2 ? c->in[2] : NULL, c->n_in > 3 ? c->in[3] : NULL,
                           c->n_in > 4 ? c->in[4] : NULL, &p));
    ib_tensor *y = c->out[0];
    int64_t count;
    IB_TRY(nms_compute(c->node, b, s, &p, NULL, &count));
    if (y->rank != 2 || y->shape[0] != count || y->shape[1] != 3)
        return ib__error(IB_ERR_INTERNAL, "%s: output was not sized for %lld selections",
                         ib__node_label(c->node), (long long)count);
    return nms_compute(c->node, b, s, &p, y->data, &count);
}

/* ---- RoiAlign ----------------------------------------------------------------------- */

typedef struct roi_params {
    bool max_mode;
    bool half_pixel;
    int64_t out_h, out_w, sampling;
    double scale;
} roi_params;

static ib_status roi_params_read(const ib__node *node, int32_t opset, roi_params *p) {
    const char *mode = NULL, *ctm = NULL;
    IB_TRY(ib__attr_string(node, "mode", "avg", &mode));
    /* Opset 10 had no such attribute and behaved as output_half_pixel. */
    IB_TRY(ib__attr_string(node, "coordinate_transformation_mode",
                           opset >= 16 ? "half_pixel" : "output_half_pixel", &ctm));
    if (strcmp(mode, "avg") == 0) p->max_mode = false;
    else if (strcmp(mode, "max") == 0) p->max_mode = true;
    else
        return ib__error(IB_ERR_INVALID_MODEL, "%s: unknown mode '%s'", ib__node_label(node),
                         mode);
    if (strcmp(ctm, "half_pixel") == 0) p->half_pixel = true;
    else if (strcmp(ctm, "output_half_pixel") == 0) p->half_pixel = false;
    else
        return ib__error(IB_ERR_INVALID_MODEL, "%s: unknown coordinate_transformation_mode '%s'",
                         ib__node_label(node), ctm);
    float scale;
    IB_TRY(ib__attr_int(node, "output_height", 1, &p->out_h));
    IB_TRY(ib__attr_int(node, "output_width", 1, &p->out_w));
    IB_TRY(ib__attr_int(node, "sampling_ratio", 0, &p->sampling));
    IB_TRY(ib__attr_float(node, "spatial_scale", 1.0f, &scale));
    p->scale = scale;
    if (p->out_h <= 0 || p->out_w <= 0 || p->out_h > (1 << 20) || p->out_w > (1 << 20))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: output_height/width must be positive",
                         ib__node_label(node));
    if (p->sampling < 0 || p->sampling > (1 << 16))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: sampling_ratio %lld is out of range",
                         ib__node_label(node), (long long)p->sampling);
    return IB_OK;
}

static ib_status infer_roi_align(ib__infer_ctx *c) {
    for (int32_t i = 0; i < 3; i++) IB_TRY(ib__require_input(c, i));
    roi_params p;
    IB_TRY(roi_params_read(c->node, c->opset, &p));
    const ib__value *x = c->in[0], *rois = c->in[1], *idx = c->in[2];
    if (x->dtype != IB_DTYPE_UNDEFINED && !ib__dtype_is_float(x->dtype))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: input dtype %s is not a float type",
                         ib__node_label(c->node), ib_dtype_name(x->dtype));
    if (x->rank >= 0 && x->rank != 4)
        return ib__error(IB_ERR_SHAPE, "%s: X must have rank 4, got %d", ib__node_label(c->node),
                         x->rank);
    if (rois->rank >= 0 && (rois->rank != 2 || (rois->dims[1] >= 0 && rois->dims[1] != 4)))
        return ib__error(IB_ERR_SHAPE, "%s: rois must have shape [num_rois, 4]",
                         ib__node_label(c->node));
    if (idx->rank >= 0 && idx->rank != 1)
        return ib__error(IB_ERR_SHAPE, "%s: batch_indices must be 1-D", ib__node_label(c->node));
    int64_t n_rois = rois->rank == 2 ? rois->dims[0] : idx->rank == 1 ? idx->dims[0] : -1;
    if (rois->rank == 2 && idx->rank == 1 && rois->dims[0] >= 0 && idx->dims[0] >= 0 &&
        rois->dims[0] != idx->dims[0])
        return ib__error(IB_ERR_SHAPE, "%s: %lld rois but %lld batch indices",
                         ib__node_label(c->node), (long long)rois->dims[0],
                         (long long)idx->dims[0]);
    int64_t dims[4] = {n_rois, x->rank == 4 ? x->dims[1] : -1, p.out_h, p.out_w};
    ib__set_output(c, 0, x->dtype, 4, dims);
    return IB_OK;
}

/* One bilinear sample: four corner offsets (within a channel plane) and weights. */
typedef struct roi_sample {
    int64_t pos[4];
    double w[4];
} roi_sample;

typedef struct roi_job {
    const ib_tensor *x, *rois, *idx;
    ib_tensor *y;
    const roi_params *p;
    int64_t channels, height, width;
    bool failed;
} roi_job;

static void roi_range(void *ctx, int64_t begin, int64_t end) {
    roi_job *j = ctx;
    const roi_params *p = j->p;
    int64_t H = j->height, W = j->width, C = j->channels;
    int64_t plane = H * W;
    for (int64_t r = begin; r < end; r++) {
        int64_t batch = ib__load_i64(j->idx->data, j->idx->dtype, r);
        double off = p->half_pixel ? 0.5 : 0.0;
        double rv[4];
        for (int k = 0; k < 4; k++) rv[k] = ib__load_f64(j->rois->data, j->rois->dtype, r * 4 + k);
        double x0 = rv[0] * p->scale - off, y0 = rv[1] * p->scale - off;
        double rw = rv[2] * p->scale - off - x0, rh = rv[3] * p->scale - off - y0;
        if (!p->half_pixel) { /* the legacy mode forces rois of at least one pixel */
            rw = fmax(rw, 1.0);
            rh = fmax(rh, 1.0);
        }
        double bin_h = rh / (double)p->out_h, bin_w = rw / (double)p->out_w;
        double gh_d = p->sampling > 0 ? (double)p->sampling : ceil(rh / (double)p->out_h);
        double gw_d = p->sampling > 0 ? (double)p->sampling : ceil(rw / (double)p->out_w);
        /* Hostile rois could ask for a huge grid: bound it by the feature map. */
        if (!(gh_d >= 0)) gh_d = 0;
        if (!(gw_d >= 0)) gw_d = 0;
        if (gh_d > (double)H + 2) gh_d = (double)H + 2;
        if (gw_d > (double)W + 2) gw_d = (double)W + 2;
        int64_t gh = (int64_t)gh_d, gw = (int64_t)gw_d;
        int64_t count = gh * gw > 1 ? gh * gw : 1;
        roi_sample *smp = ib__aligned_alloc((size_t)(count > 0 ? count : 1) * sizeof(roi_sample));
        if (!smp) {
            j->failed = true;
            return;
        }
        for (int64_t ph = 0; ph < p->out_h; ph++)
            for (int64_t pw = 0; pw < p->out_w; pw++) {
                int64_t ns = 0;
                for (int64_t iy = 0; iy < gh; iy++) {
                    double yy = y0 + (double)ph * bin_h + ((double)iy + 0.5) * bin_h / (double)gh;
                    for (int64_t ix = 0; ix < gw; ix++) {
                        double xx = x0 + (double)pw * bin_w + ((double)ix + 0.5) * bin_w / (double)gw;
                        roi_sample *s = &smp[ns++];
                        memset(s, 0, sizeof *s);
                        if (yy < -1.0 || yy > (double)H || xx < -1.0 || xx > (double)W) continue;
                        double y = yy <= 0 ? 0 : yy, x = xx <= 0 ? 0 : xx;
                        int64_t yl = (int64_t)y, xl = (int64_t)x, yh, xh;
                        if (yl >= H - 1) {
                            yh = yl = H - 1;
                            y = (double)yl;
                        } else
                            yh = yl + 1;
                        if (xl >= W - 1) {
                            xh = xl = W - 1;
                            x = (double)xl;
                        } else
                            xh = xl + 1;
                        double ly = y - (double)yl, lx = x - (double)xl, hy = 1 - ly, hx = 1 - lx;
                        s->pos[0] = yl * W + xl;
                        s->pos[1] = yl * W + xh;
                        s->pos[2] = yh * W + xl;
                        s->pos[3] = yh * W + xh;
                        s->w[0] = hy * hx;
                        s->w[1] = hy * lx;
                        s->w[2] = ly * hx;
                        s->w[3] = ly * lx;
                    }
                }
                for (int64_t ch = 0; ch < C; ch++) {
                    int64_t base = (batch * C + ch) * plane;
                    double acc = 0.0;
                    for (int64_t k = 0; k < ns; k++) {
                        const roi_sample *s = &smp[k];
                        if (p->max_mode) {
                            /* Max over the weighted corners, as the reference does. */
                            double m = 0.0;
                            for (int q = 0; q < 4; q++) {
                                double v = s->w[q] * ib__load_f64(j->x->data, j->x->dtype,
                                                                  base + s->pos[q]);
                                if (q == 0 || v > m) m = v;
                            }
                            if (k == 0 || m > acc) acc = m;
                        } else {
                            for (int q = 0; q < 4; q++)
                                acc += s->w[q] *
                                       ib__load_f64(j->x->data, j->x->dtype, base + s->pos[q]);
                        }
                    }
                    if (!p->max_mode) acc /= (double)count;
                    int64_t at = ((r * C + ch) * p->out_h + ph) * p->out_w + pw;
                    ib__store_f64(j->y->data, j->y->dtype, at, acc);
                }
            }
        ib__aligned_free(smp);
    }
}

static ib_status run_roi_align(ib__run_ctx *c) {
    roi_params p;
    IB_TRY(roi_params_read(c->node, c->opset, &p));
    const ib_tensor *x = c->in[0], *rois = c->in[1], *idx = c->in[2];
    if (x->rank != 4 || rois->rank != 2 || rois->shape[1] != 4 || idx->rank != 1 ||
        idx->shape[0] != rois->shape[0])
        return ib__error(IB_ERR_SHAPE,
                         "%s: expected X [N, C, H, W], rois [R, 4] and batch_indices [R]",
                         ib__node_label(c->node));
    if (!ib__dtype_is_integer(idx->dtype))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: batch_indices must be int64",
                         ib__node_label(c->node));
    for (int64_t r = 0; r < idx->shape[0]; r++) {
        int64_t b = ib__load_i64(idx->data, idx->dtype, r);
        if (b < 0 || b >= x->shape[0])
            return ib__error(IB_ERR_INVALID_ARGUMENT,
                             "%s: batch_indices[%lld] = %lld is outside [0, %lld)",
                             ib__node_label(c->node), (long long)r, (long long)b,
                             (long long)x->shape[0]);
    }
    if (x->shape[2] == 0 || x->shape[3] == 0) return IB_OK; /* nothing to sample: zeros */
    roi_job j = {.x = x, .rois = rois, .idx = idx, .y = c->out[0], .p = &p,
                 .channels = x->shape[1], .height = x->shape[2], .width = x->shape[3]};
    ib__parallel_for(c->pool, rois->shape[0], roi_range, &j);
    if (j.failed)
        return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
    return IB_OK;
}

const ib__op_def ib__ops_detection[] = {
    {IB_OP_NON_MAX_SUPPRESSION, infer_nms, run_nms},
    {IB_OP_ROI_ALIGN, infer_roi_align, run_roi_align},
    {IB_OP_UNKNOWN, NULL, NULL},
};
