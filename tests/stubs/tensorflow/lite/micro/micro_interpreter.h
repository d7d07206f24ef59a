#pragma once
#include "tflm_stub_core.h"
