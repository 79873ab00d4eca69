/* mdfi_conv_amx.c -- AMX (placeholder until the tile kernel lands). */
#include "mdfi_conv_q8.h"
#if MDFI_CONV_X86
extern const q8_kernel mdfi_q8_kerns_vnni512[];
const q8_ops mdfi_q8_ops_amx = {"amx", 0, mdfi_q8_x4_avx2, mdfi_q8_pack_ref, mdfi_q8_kerns_vnni512, 3};
#else
typedef int mdfi_conv_amx_unused;
#endif
