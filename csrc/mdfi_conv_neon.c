/* mdfi_conv_neon.c -- aarch64 (placeholder). */
#include "mdfi_conv_q8.h"
typedef int mdfi_conv_neon_unused;
