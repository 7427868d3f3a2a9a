// SHA-256 (FIPS 180-4), for naming the model file a saved session belongs to (the Python registry and the
// calibration store name files by the same digest).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace lazyllm_edge {

using Sha256Digest = std::array<uint8_t, 32>;

class Sha256 {
public:
    Sha256();
    void update(const void* data, size_t size);
    Sha256Digest finish();  // once; the object is spent afterwards

private:
    void block(const uint8_t* p);  // one 64-byte block into state_
    uint32_t state_[8];
    uint8_t buffer_[64];
    size_t buffered_ = 0;
    uint64_t total_bytes_ = 0;
};

Sha256Digest sha256(const void* data, size_t size);
std::string hex_digest(const Sha256Digest& digest);  // 64 lowercase hex digits

}  // namespace lazyllm_edge
