/*
 * idmint_cred.h - reader for the idmint credential slot, format v1.
 *
 * Copy idmint_cred.h and idmint_cred.c into your firmware tree. They are
 * C99, need only <stdint.h>, <stddef.h> and <string.h>, never allocate and
 * never read outside the region you pass in.
 *
 * The slot layout (all integers little-endian) is documented in
 * docs/credential-slot.md:
 *
 *   offset  size  field
 *        0    16  magic "IDMINT-CRED-SLOT"
 *       16     4  capacity (total slot size, header included)
 *       20     4  format version (0 = empty golden slot, 1 = written)
 *       24     4  payload length
 *       28     4  CRC-32 (IEEE 802.3 / zlib) of the payload
 *       32     .  payload: records of { u16 type, u32 length, value }
 *
 * Typical use:
 *
 *   idmint_cred_iter it;
 *   uint16_t type; const uint8_t *value; uint32_t len;
 *   idmint_cred_status st = idmint_cred_open(&it, flash_base, flash_len);
 *   if (st != IDMINT_CRED_OK) { report(idmint_cred_strerror(st)); return; }
 *   while ((st = idmint_cred_next(&it, &type, &value, &len)) == IDMINT_CRED_OK) {
 *       if (type == IDMINT_CRED_PRIVATE_KEY) load_key(value, len);
 *   }
 *   if (st != IDMINT_CRED_END) report(idmint_cred_strerror(st));
 *
 * Values point into the region; text values are NOT NUL-terminated.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef IDMINT_CRED_H
#define IDMINT_CRED_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Sizes of the fixed parts of the format. */
#define IDMINT_CRED_MAGIC_LEN 16u
#define IDMINT_CRED_HEADER_LEN 32u
#define IDMINT_CRED_RECORD_HEADER_LEN 6u

/* Values of the format version field. */
#define IDMINT_CRED_VERSION_EMPTY 0u
#define IDMINT_CRED_VERSION_1 1u

/* Record types of format v1. Readers must skip types they do not know. */
#define IDMINT_CRED_DEVICE_ID 1u         /* UTF-8 */
#define IDMINT_CRED_CERTIFICATE 2u       /* leaf certificate, DER */
#define IDMINT_CRED_CHAIN_CERTIFICATE 3u /* DER, repeatable, leaf's issuer first */
#define IDMINT_CRED_PRIVATE_KEY 4u       /* PKCS#8 DER */
#define IDMINT_CRED_ENDPOINT 5u          /* UTF-8 URL */
#define IDMINT_CRED_THING_NAME 6u        /* UTF-8 */
#define IDMINT_CRED_TRUST_ANCHOR 7u      /* server CA certificate, DER, repeatable */

/* Result of every call. Errors are negative. */
typedef enum {
    IDMINT_CRED_OK = 0,               /* success; for next(): a record was returned */
    IDMINT_CRED_END = 1,              /* next(): no more records */
    IDMINT_CRED_ERR_ARGUMENT = -1,    /* a NULL pointer was passed */
    IDMINT_CRED_ERR_NOT_FOUND = -2,   /* no magic in the region */
    IDMINT_CRED_ERR_CAPACITY = -3,    /* capacity < header, or slot runs past the region */
    IDMINT_CRED_ERR_EMPTY = -4,       /* version 0: the slot was never written */
    IDMINT_CRED_ERR_VERSION = -5,     /* a format version this reader does not know */
    IDMINT_CRED_ERR_PAYLOAD_LEN = -6, /* payload length exceeds the capacity */
    IDMINT_CRED_ERR_CRC = -7,         /* payload CRC-32 mismatch: corrupt slot */
    IDMINT_CRED_ERR_RECORD = -8       /* a record runs past the end of the payload */
} idmint_cred_status;

/*
 * Iterator over the records of a verified slot. Treat the fields as
 * private; it is a plain struct so it can live on the stack.
 */
typedef struct {
    const uint8_t *slot;    /* start of the slot (its magic) */
    const uint8_t *payload; /* start of the payload */
    uint32_t capacity;      /* capacity field */
    uint32_t payload_len;   /* payload length field */
    uint32_t pos;           /* offset of the next record in the payload */
} idmint_cred_iter;

/*
 * Find the slot in region[0 .. region_len) and verify it.
 *
 * The region is scanned for the magic. A magic followed by an implausible
 * header (capacity out of bounds, unknown version) is skipped, so stray
 * copies of the magic string elsewhere in flash do no harm; if no magic has
 * a plausible header, the first rejection is returned. The slot found is
 * then checked: version 1, payload length within capacity, CRC-32.
 * On IDMINT_CRED_OK the iterator is positioned before the first record.
 */
idmint_cred_status idmint_cred_open(idmint_cred_iter *it, const void *region, size_t region_len);

/*
 * Return the next record: its type, a pointer to its value inside the
 * region and the value's length. Returns IDMINT_CRED_END after the last
 * record, or IDMINT_CRED_ERR_RECORD if a record is truncated (which a slot
 * with a correct CRC written by idmint never has).
 */
idmint_cred_status idmint_cred_next(idmint_cred_iter *it, uint16_t *type, const uint8_t **value, uint32_t *len);

/* Rewind the iterator to the first record. */
void idmint_cred_rewind(idmint_cred_iter *it);

/*
 * Find the first record of the given type (does not move `it`).
 * Returns IDMINT_CRED_OK, IDMINT_CRED_END if there is none, or an error.
 */
idmint_cred_status idmint_cred_find(const idmint_cred_iter *it, uint16_t type, const uint8_t **value, uint32_t *len);

/* Offset of the slot from the start of the region passed to open(). */
size_t idmint_cred_slot_offset(const idmint_cred_iter *it, const void *region);

/* CRC-32 (IEEE 802.3, as zlib's crc32) of data[0 .. len). */
uint32_t idmint_cred_crc32(const uint8_t *data, size_t len);

/* A short English description of a status, for logs. */
const char *idmint_cred_strerror(idmint_cred_status status);

#ifdef __cplusplus
}
#endif

#endif /* IDMINT_CRED_H */
