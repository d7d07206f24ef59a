// Compile-only stand-in for the Zephyr kernel API the generated app uses (tests only).
#pragma once
#include <stdint.h>
extern "C" void printk(const char* fmt, ...);
int32_t k_msleep(int32_t ms);
int64_t k_uptime_get(void);
