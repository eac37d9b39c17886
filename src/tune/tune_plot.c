/* Tuning curves as a plain SVG file: per task the best latency so far over the first one
 * measured, against that task's trials; end to end, the sum over tasks of occurrences x
 * best latency, against all trials. Read back from the database, whose append order is
 * the order of measurement, so the curves cover earlier runs too. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tune/tune.h"

#define W 900
#define PANEL_H 300
#define LEFT 70
#define RIGHT 220
#define TOP 40

typedef struct curve {
    int32_t n, cap;
    double *x, *y;
} curve;

static bool curve_push(curve *c, double x, double y) {
    if (c->n == c->cap) {
        int32_t cap = c->cap ? c->cap * 2 : 64;
        double *nx = ib__malloc((size_t)cap * 2 * sizeof *nx);
        if (!nx) return false;
        if (c->n) {
            memcpy(nx, c->x, (size_t)c->n * sizeof *nx);
            memcpy(nx + cap, c->y, (size_t)c->n * sizeof *nx);
        }
        ib__free(c->x);
        c->x = nx;
        c->y = nx + cap;
        c->cap = cap;
    }
    c->x[c->n] = x;
    c->y[c->n] = y;
    c->n++;
    return true;
}

static const char *color(int32_t i) {
    static const char *c[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                              "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
    return c[i % 10];
}

/* One panel: axes, ticks, the curves as step polylines, a legend for the first `legend`. */
static void panel(FILE *f, int32_t y0, const char *title, const char *ylabel, const curve *cs,
                  int32_t n, const char *const *names, int32_t legend) {
    double xmax = 1, ymin = INFINITY, ymax = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        for (int32_t j = 0; j < cs[i].n; j++) {
            if (cs[i].x[j] > xmax) xmax = cs[i].x[j];
            if (cs[i].y[j] < ymin) ymin = cs[i].y[j];
            if (cs[i].y[j] > ymax) ymax = cs[i].y[j];
        }
    if (!isfinite(ymin)) ymin = 0, ymax = 1;
    if (ymax - ymin < 1e-9 * (fabs(ymax) + 1)) ymin -= 0.5 * (fabs(ymin) + 1e-3), ymax += 0.05 * (fabs(ymax) + 1e-3);
    double pad = 0.05 * (ymax - ymin);
    ymin -= pad;
    ymax += pad;
    const int32_t pw = W - LEFT - RIGHT, ph = PANEL_H - 70;
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"15\" font-weight=\"bold\">%s</text>\n", LEFT,
            y0 + 18, title);
    int32_t top = y0 + 30;
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#444\"/>\n",
            LEFT, top, pw, ph);
    for (int32_t t = 0; t <= 4; t++) {
        double v = ymin + (ymax - ymin) * t / 4;
        double py = top + ph - (double)ph * t / 4;
        fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", LEFT,
                LEFT + pw, py, py);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%.3g</text>\n",
                LEFT - 6, py + 4, v);
        double xv = xmax * t / 4;
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%.0f</text>\n",
                LEFT + pw * t / 4.0, top + ph + 16, xv);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">trials</text>\n",
            LEFT + pw / 2, top + ph + 34);
    fprintf(f, "<text x=\"16\" y=\"%d\" font-size=\"12\" transform=\"rotate(-90 16 %d)\" "
               "text-anchor=\"middle\">%s</text>\n", top + ph / 2, top + ph / 2, ylabel);
    for (int32_t i = 0; i < n; i++) {
        if (cs[i].n == 0) continue;
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", color(i));
        double prev_y = 0;
        for (int32_t j = 0; j < cs[i].n; j++) {
            double px = LEFT + pw * cs[i].x[j] / xmax;
            double py = top + ph - ph * (cs[i].y[j] - ymin) / (ymax - ymin);
            if (j > 0) fprintf(f, "%.1f,%.1f ", px, prev_y); /* best-so-far: a step */
            fprintf(f, "%.1f,%.1f ", px, py);
            prev_y = py;
        }
        fprintf(f, "\"/>\n");
        if (i < legend && names) {
            int32_t ly = top + 6 + 16 * i;
            fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"3\"/>\n",
                    LEFT + pw + 10, LEFT + pw + 28, ly, ly, color(i));
            fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"10\">", LEFT + pw + 32, ly + 4);
            for (const char *p = names[i]; *p; p++) {
                if (*p == '<') fputs("&lt;", f);
                else if (*p == '>') fputs("&gt;", f);
                else if (*p == '&') fputs("&amp;", f);
                else fputc(*p, f);
            }
            fprintf(f, "</text>\n");
        }
    }
}

ib_status ib__tune_plot_svg(const ib__tune_taskset *ts, const ib__tune_db *db, const char *target,
                            const char *path) {
    int32_t n = ts->n;
    curve *cs = ib__calloc((size_t)n + 1, sizeof *cs);
    double *best = ib__calloc((size_t)n + 1, sizeof *best), *first = ib__calloc((size_t)n + 1, sizeof *first);
    int32_t *trials = ib__calloc((size_t)n + 1, sizeof *trials);
    const char **names = ib__calloc((size_t)n + 1, sizeof *names);
    ib_status st = IB_OK;
    FILE *f = NULL;
    if (!cs || !best || !first || !trials || !names) {
        st = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory");
        goto out;
    }
    curve *e2e = &cs[n];
    int32_t all = 0;
    /* a task not yet tuned counts in the end-to-end sum with its first measured latency */
    for (int32_t i = 0; i < ib__tune_db_size(db); i++) {
        const ib__tune_record *r = ib__tune_db_at(db, i);
        if (!r->ok || r->in_model || r->ms <= 0 || strcmp(r->target, target)) continue;
        for (int32_t ti = 0; ti < n; ti++)
            if (first[ti] == 0 && strcmp(ts->tasks[ti].key, r->key) == 0) first[ti] = best[ti] = r->ms;
    }
    for (int32_t i = 0; i < ib__tune_db_size(db) && st == IB_OK; i++) {
        const ib__tune_record *r = ib__tune_db_at(db, i);
        if (r->in_model || strcmp(r->target, target)) continue;
        int32_t ti = 0;
        while (ti < n && strcmp(ts->tasks[ti].key, r->key) != 0) ti++;
        if (ti == n) continue;
        trials[ti]++;
        all++;
        if (!r->ok || r->ms <= 0) continue;
        if (r->ms < best[ti]) best[ti] = r->ms;
        if (!curve_push(&cs[ti], trials[ti], best[ti] / first[ti])) st = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory");
        double sum = 0;
        for (int32_t k = 0; k < n; k++) sum += ts->tasks[k].count * best[k];
        if (st == IB_OK && !curve_push(e2e, all, sum)) st = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory");
    }
    if (st) goto out;
    for (int32_t i = 0; i < n; i++) names[i] = ts->tasks[i].label;
    f = fopen(path, "w");
    if (!f) {
        st = ib__error(IB_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
        goto out;
    }
    int32_t legend = n < 14 ? n : 14;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "font-family=\"sans-serif\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            W, TOP + 2 * PANEL_H);
    fprintf(f, "<text x=\"%d\" y=\"24\" font-size=\"17\">Tuning curves (%s, %d records)</text>\n",
            LEFT, target, all);
    panel(f, TOP, "Per task: best latency / first measured", "relative latency", cs, n, names, legend);
    const char *e2e_name[] = {"sum of count x best ms"};
    panel(f, TOP + PANEL_H, "End to end: tunable kernels, sum over the model (ms)", "ms", e2e, 1,
          e2e_name, 1);
    fprintf(f, "</svg>\n");
    if (ferror(f)) st = ib__error(IB_ERR_IO, "cannot write '%s'", path);
    if (fclose(f) != 0 && st == IB_OK) st = ib__error(IB_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
out:
    for (int32_t i = 0; cs && i <= n; i++) ib__free(cs[i].x);
    ib__free(cs);
    ib__free(best);
    ib__free(first);
    ib__free(trials);
    ib__free(names);
    return st;
}
