// Host entry points of the CUDA kernels (defined in the .cu files, bound in module.cpp). Every
// entry takes raw device pointers + byte sizes + the stream as integers, validates all of them
// and throws pq::Error on anything wrong, including a failed launch.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace pq {
namespace cuda {

// ---- decode.cu
bool has_decoder(int qtype);
std::vector<int> decoder_types();
void decode(int qtype, uintptr_t src_ptr, int64_t src_nbytes, uintptr_t dst_ptr, int64_t dst_nbytes,
            const std::string& dtype, int64_t rows, int64_t cols, uintptr_t stream);

}  // namespace cuda
}  // namespace pq
