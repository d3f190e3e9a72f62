/*
** safetensors_limits.h: the one set of limits of the safetensors reader and
** writer, so that whatever nn_safetensors_save writes, nn_safetensors_open
** reads (issue 21: a save could succeed and leave a file that could not be
** opened). Private: never installed.
*/
#ifndef NN_SAFETENSORS_LIMITS_H
#define NN_SAFETENSORS_LIMITS_H

#include "autograd.h"

#include <stdint.h>

/* The JSON header's length in bytes, padding included: the official
** implementation's limit (a larger header is surely corrupt). The writer
** refuses to write a longer one; the reader refuses to read it. */
#define NNI_ST_MAX_HEADER_BYTES 100000000u

/* Everything else is bounded by the header. Every entry, a tensor's or a
** metadata pair, takes at least 6 bytes ('"":"",'), so no header holds more
** entries than the reader's arrays can count (it grows them up to
** INT32_MAX / 2 entries, and both sides count tensors in an int). */
_Static_assert(NNI_ST_MAX_HEADER_BYTES / 6u < INT32_MAX / 2, "the header bounds the entry count");

/* Ranks: both sides stop at AG_MAX_DIMS (a tensor cannot have more). Names
** and metadata strings: any length within the header, non-empty names,
** no NUL (C strings cannot hold one; the reader refuses \u0000), valid
** UTF-8 (both check), unique, and no tensor named "__metadata__". Offsets and
** shapes: below 2^63 (the reader's JSON integers), which no tensor in memory
** reaches. */

#endif
