// Compile-only stand-in for the Arduino core API the generated sketch uses (tests only).
#pragma once
struct SerialStub { void begin(long baud); void print(const char* s); void println(const char* s); };
extern SerialStub Serial;
unsigned long micros();
void delay(unsigned long ms);
