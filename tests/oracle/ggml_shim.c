// The few ggml symbols ggml-quants.c links against, so it can be built alone into a small
// shared library for tests. pq_oracle_quantize mirrors the dispatch of ggml_quantize_chunk()
// (ggml.c) for the types pyquant quantizes, with imatrix = NULL unless one is passed.
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ggml-common.h"
#include "ggml-quants.h"

void ggml_abort(const char * file, int line, const char * fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ggml oracle abort %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    abort();
}

static int block_size_of(int type) {
    switch (type) {
        case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1:
        case GGML_TYPE_Q8_0: case GGML_TYPE_IQ4_NL: return 32;
        default: return 256;
    }
}

size_t ggml_type_size(enum ggml_type type) {
    switch (type) {
        case GGML_TYPE_Q4_0: return sizeof(block_q4_0);
        case GGML_TYPE_Q4_1: return sizeof(block_q4_1);
        case GGML_TYPE_Q5_0: return sizeof(block_q5_0);
        case GGML_TYPE_Q5_1: return sizeof(block_q5_1);
        case GGML_TYPE_Q8_0: return sizeof(block_q8_0);
        case GGML_TYPE_Q2_K: return sizeof(block_q2_K);
        case GGML_TYPE_Q3_K: return sizeof(block_q3_K);
        case GGML_TYPE_Q4_K: return sizeof(block_q4_K);
        case GGML_TYPE_Q5_K: return sizeof(block_q5_K);
        case GGML_TYPE_Q6_K: return sizeof(block_q6_K);
        case GGML_TYPE_IQ4_NL: return sizeof(block_iq4_nl);
        case GGML_TYPE_IQ4_XS: return sizeof(block_iq4_xs);
        default: return 0;
    }
}

size_t ggml_row_size(enum ggml_type type, int64_t ne) {
    return ggml_type_size(type) * (size_t)(ne / block_size_of(type));
}

const char * ggml_type_name(enum ggml_type type) { (void)type; return "?"; }

// Returns bytes written, or 0 for a type this oracle does not cover.
size_t pq_oracle_quantize(int type, const float * src, void * dst, int64_t nrows, int64_t n_per_row,
                          const float * imatrix) {
    switch (type) {
        case GGML_TYPE_Q4_0: return quantize_q4_0(src, dst, nrows, n_per_row, imatrix);
        case GGML_TYPE_Q4_1: return quantize_q4_1(src, dst, nrows, n_per_row, imatrix);
        case GGML_TYPE_Q5_0: return quantize_q5_0(src, dst, nrows, n_per_row, imatrix);
        case GGML_TYPE_Q5_1: return quantize_q5_1(src, dst, nrows, n_per_row, imatrix);
        case GGML_TYPE_Q8_0: return quantize_q8_0(src, dst, nrows, n_per_row, imatrix);
        case GGML_TYPE_Q2_K: return quantize_q2_K(src, dst, nrows, n_per_row, imatrix);
        case GGML_TYPE_Q3_K: return quantize_q3_K(src, dst, nrows, n_per_row, imatrix);
        case GGML_TYPE_Q4_K: return quantize_q4_K(src, dst, nrows, n_per_row, imatrix);
        case GGML_TYPE_Q5_K: return quantize_q5_K(src, dst, nrows, n_per_row, imatrix);
        case GGML_TYPE_Q6_K: return quantize_q6_K(src, dst, nrows, n_per_row, imatrix);
        case GGML_TYPE_IQ4_NL: return quantize_iq4_nl(src, dst, nrows, n_per_row, imatrix);
        case GGML_TYPE_IQ4_XS: return quantize_iq4_xs(src, dst, nrows, n_per_row, imatrix);
        default: return 0;
    }
}

// Decoders, for round-trip checks.
int pq_oracle_dequantize(int type, const void * src, float * dst, int64_t n) {
    switch (type) {
        case GGML_TYPE_Q4_0: dequantize_row_q4_0(src, dst, n); return 1;
        case GGML_TYPE_Q4_1: dequantize_row_q4_1(src, dst, n); return 1;
        case GGML_TYPE_Q5_0: dequantize_row_q5_0(src, dst, n); return 1;
        case GGML_TYPE_Q5_1: dequantize_row_q5_1(src, dst, n); return 1;
        case GGML_TYPE_Q8_0: dequantize_row_q8_0(src, dst, n); return 1;
        case GGML_TYPE_Q2_K: dequantize_row_q2_K(src, dst, n); return 1;
        case GGML_TYPE_Q3_K: dequantize_row_q3_K(src, dst, n); return 1;
        case GGML_TYPE_Q4_K: dequantize_row_q4_K(src, dst, n); return 1;
        case GGML_TYPE_Q5_K: dequantize_row_q5_K(src, dst, n); return 1;
        case GGML_TYPE_Q6_K: dequantize_row_q6_K(src, dst, n); return 1;
        case GGML_TYPE_IQ4_NL: dequantize_row_iq4_nl(src, dst, n); return 1;
        case GGML_TYPE_IQ4_XS: dequantize_row_iq4_xs(src, dst, n); return 1;
        default: return 0;
    }
}
