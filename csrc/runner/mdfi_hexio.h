/* mdfi_hexio.h -- the .hex vector format of docs/golden-format.md ($readmemh).
 *
 * One value per line, lower-case hex, two's complement at the declared width
 * (value & (2^width - 1)), zero-padded to ceil(width/4) digits.  The writer produces exactly
 * that.  The reader also accepts what other tools write (like mdfi/hw/vectors.py): upper case,
 * fewer digits, several values per line, blank lines, "//" comments and sequential
 * "@address" markers; it refuses values wider than the declared width, a wrong value count
 * and any other character, naming the file and line.
 */
#ifndef MDFI_HEXIO_H
#define MDFI_HEXIO_H

#include <stdint.h>

#include "mdfi_rt_util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Element types of the runner's arrays (destination of reads, source of writes). */
enum mdfi_elem {
    MDFI_ELEM_U8 = 0,   /* uint8_t  */
    MDFI_ELEM_I8 = 1,   /* int8_t   */
    MDFI_ELEM_U16 = 2,  /* uint16_t */
    MDFI_ELEM_I16 = 3,  /* int16_t  */
    MDFI_ELEM_I32 = 4,  /* int32_t  */
    MDFI_ELEM_I64 = 5   /* int64_t  */
};

/* Bytes of one element, 0 for an unknown type. */
size_t mdfi_elem_size(int32_t elem);

/* Read exactly n values of `bits` width (1..64; signed: two's complement, else unsigned)
 * from the .hex file `path` into dst: n elements of type `elem`, which must hold every
 * value of the width (checked).  Errors: "path:line: message". */
int mdfi_hex_read(const char *path, int64_t n, int32_t bits, int is_signed, void *restrict dst, int32_t elem,
                  mdfi_err *err);

/* Write n elements of src (type `elem`) as a canonical .hex file at `bits` width (1..64). */
int mdfi_hex_write(const char *path, const void *restrict src, int32_t elem, int64_t n, int32_t bits,
                   mdfi_err *err);

#ifdef __cplusplus
}
#endif
#endif /* MDFI_HEXIO_H */
