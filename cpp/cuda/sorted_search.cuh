// Binary searches over sorted position lists, on the device.
#pragma once
#include <cstdint>

namespace lazyllm_edge {
namespace cuda {

// Index of the first element of sorted a[0, n) that is > v.
__device__ __forceinline__ int upper_bound(const int32_t* a, int n, int v) {
    int lo = 0, hi = n;
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (a[mid] <= v) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

// Index of the first element of sorted a[0, n) that is >= v.
__device__ __forceinline__ int lower_bound(const int32_t* a, int n, int v) {
    int lo = 0, hi = n;
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (a[mid] < v) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

}  // namespace cuda
}  // namespace lazyllm_edge
