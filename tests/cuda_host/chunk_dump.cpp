// Host harness for csrc/cuda/chunk_dequant.cuh (the GEMV's 32-weight chunk dequantizers): dequantizes every
// block of a file with the chunk dequantizers, w = q * scale + min, and writes the floats, so that
// tests/test_cuda_build.py can compare them with gguf-py bit for bit without a GPU.
// Usage: chunk_dump TYPE_NAME in.bin out.bin
//        chunk_dump EXL2 in.bin out.bin   (in: records of one width byte, then that width's block)
#include <cstdio>
#include <cstring>
#include <vector>

#include "cuda/chunk_dequant.cuh"

template <class C>
int dump(const std::vector<uint8_t>& in, std::vector<float>& out) {
  if (in.size() % C::kBytes) return 2;
  const size_t nb = in.size() / C::kBytes;
  out.resize(nb * C::kBlock);
  for (size_t b = 0; b < nb; ++b)
    for (int c = 0; c < C::kBlock / 32; ++c) {
      float q[32];
      pq::chunk::ScaleMin sm[2];
      C::run(in.data() + b * C::kBytes, c, q, sm);
      for (int j = 0; j < 32; ++j) out[b * C::kBlock + c * 32 + j] = q[j] * sm[j / 16].s + sm[j / 16].m;
    }
  return 0;
}

int dump_exl2(const std::vector<uint8_t>& in, std::vector<float>& out) {
  for (size_t at = 0; at < in.size();) {
    const int bits = in[at];
    if (!pq::chunk::Exl2::valid(bits) || at + 1 + pq::chunk::Exl2::block_bytes(bits) > in.size()) return 2;
    float q[32];
    pq::chunk::ScaleMin sm[2];
    pq::chunk::Exl2::run(in.data() + at + 1, bits, q, sm);
    for (int j = 0; j < 32; ++j) out.push_back(q[j] * sm[j / 16].s + sm[j / 16].m);
    at += 1 + pq::chunk::Exl2::block_bytes(bits);
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 4) return 1;
  FILE* f = std::fopen(argv[2], "rb");
  if (!f) return 1;
  std::vector<uint8_t> in;
  uint8_t buf[4096];
  size_t r;
  while ((r = std::fread(buf, 1, sizeof buf, f)) > 0) in.insert(in.end(), buf, buf + r);
  std::fclose(f);
  std::vector<float> out;
  const char* t = argv[1];
  int rc = 3;
#define PQ_TRY(T) \
  if (!std::strcmp(t, #T)) rc = dump<pq::chunk::T>(in, out);
  PQ_TRY(Q4_0) PQ_TRY(Q4_1) PQ_TRY(Q5_0) PQ_TRY(Q5_1) PQ_TRY(Q8_0) PQ_TRY(Q2_K) PQ_TRY(Q3_K) PQ_TRY(Q4_K)
  PQ_TRY(Q5_K) PQ_TRY(Q6_K) PQ_TRY(IQ4_NL) PQ_TRY(IQ4_XS)
  if (!std::strcmp(t, "EXL2")) rc = dump_exl2(in, out);
  if (rc) return rc;
  FILE* o = std::fopen(argv[3], "wb");
  if (!o) return 1;
  std::fwrite(out.data(), sizeof(float), out.size(), o);
  std::fclose(o);
  return 0;
}
