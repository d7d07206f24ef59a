// Compile-only stand-in for the TensorFlow Lite Micro API the generated programs use (tests only).
// The op resolver's Add* methods are declared by the generated tflm_resolver_methods.inc, one per
// entry of edgeopt's TFLM op table, so a program calling a method the table lacks does not compile.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;
typedef union {
  int32_t* i32; int16_t* i16; int8_t* int8; uint8_t* uint8; float* f; char* raw;
} TfLitePtrUnion;
typedef struct { float scale; int32_t zero_point; } TfLiteQuantizationParams;
typedef struct { TfLitePtrUnion data; TfLiteQuantizationParams params; size_t bytes; } TfLiteTensor;

namespace tflite {
struct Model {};
const Model* GetModel(const void* buffer);
class MicroOpResolver {};
template <unsigned int tOpCount>
class MicroMutableOpResolver : public MicroOpResolver {
 public:
#include "tflm_resolver_methods.inc"
};
class MicroInterpreter {
 public:
  MicroInterpreter(const Model* model, const MicroOpResolver& resolver, uint8_t* arena, size_t arena_size);
  TfLiteStatus AllocateTensors();
  TfLiteStatus Invoke();
  TfLiteTensor* input(size_t index);
  TfLiteTensor* output(size_t index);
  size_t arena_used_bytes() const;
};
}  // namespace tflite
