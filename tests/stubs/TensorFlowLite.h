// Arduino_TensorFlowLite library entry header (stub).
#pragma once
#include "tflm_stub_core.h"
