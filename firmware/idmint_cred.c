/*
 * idmint_cred.c - reader for the idmint credential slot, format v1.
 * See idmint_cred.h for the API and docs/credential-slot.md for the format.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "idmint_cred.h"

#include <string.h>

/*
 * The magic, stored REVERSED on purpose: if this file kept the string
 * "IDMINT-CRED-SLOT" in its read-only data, the firmware image would hold a
 * second copy of the magic next to the real slot, and tools scanning the
 * image for the slot would have to guess which one is real.
 */
static const char k_magic_reversed[IDMINT_CRED_MAGIC_LEN + 1] = "TOLS-DERC-TNIMDI";

/* Header field offsets. */
#define OFF_CAPACITY 16u
#define OFF_VERSION 20u
#define OFF_PAYLOAD_LEN 24u
#define OFF_CRC 28u

static uint32_t read_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint16_t read_le16(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] | ((uint16_t)p[1] << 8));
}

static int is_magic(const uint8_t *p)
{
    size_t i;
    for (i = 0; i < IDMINT_CRED_MAGIC_LEN; i++) {
        if (p[i] != (uint8_t)k_magic_reversed[IDMINT_CRED_MAGIC_LEN - 1u - i]) {
            return 0;
        }
    }
    return 1;
}

uint32_t idmint_cred_crc32(const uint8_t *data, size_t len)
{
    /* Bitwise, table-less CRC-32: reflected polynomial 0xEDB88320, initial
     * value and final XOR 0xFFFFFFFF. Small and fast enough for a few KiB
     * at boot. crc32("123456789") == 0xCBF43926. */
    uint32_t crc = 0xFFFFFFFFu;
    size_t i;
    int bit;
    for (i = 0; i < len; i++) {
        crc ^= data[i];
        for (bit = 0; bit < 8; bit++) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
        }
    }
    return crc ^ 0xFFFFFFFFu;
}

/*
 * Check the header at `slot`, which has `avail` bytes until the end of the
 * region. Only structural checks: is this plausibly a slot at all?
 */
static idmint_cred_status check_header(const uint8_t *slot, size_t avail)
{
    uint32_t capacity;
    uint32_t version;
    if (avail < IDMINT_CRED_HEADER_LEN) {
        return IDMINT_CRED_ERR_CAPACITY;
    }
    capacity = read_le32(slot + OFF_CAPACITY);
    version = read_le32(slot + OFF_VERSION);
    if (capacity < IDMINT_CRED_HEADER_LEN || (size_t)capacity > avail) {
        return IDMINT_CRED_ERR_CAPACITY;
    }
    if (version != IDMINT_CRED_VERSION_EMPTY && version != IDMINT_CRED_VERSION_1) {
        return IDMINT_CRED_ERR_VERSION;
    }
    return IDMINT_CRED_OK;
}

idmint_cred_status idmint_cred_open(idmint_cred_iter *it, const void *region, size_t region_len)
{
    const uint8_t *base = (const uint8_t *)region;
    idmint_cred_status first_rejection = IDMINT_CRED_ERR_NOT_FOUND;
    const uint8_t *slot = NULL;
    size_t off;

    if (it == NULL || region == NULL) {
        return IDMINT_CRED_ERR_ARGUMENT;
    }
    memset(it, 0, sizeof(*it));

    /* 1. Find the first magic followed by a plausible header. */
    for (off = 0; region_len >= IDMINT_CRED_MAGIC_LEN && off <= region_len - IDMINT_CRED_MAGIC_LEN; off++) {
        idmint_cred_status st;
        if (!is_magic(base + off)) {
            continue;
        }
        st = check_header(base + off, region_len - off);
        if (st == IDMINT_CRED_OK) {
            slot = base + off;
            break;
        }
        if (first_rejection == IDMINT_CRED_ERR_NOT_FOUND) {
            first_rejection = st;
        }
    }
    if (slot == NULL) {
        return first_rejection;
    }

    /* 2. Verify it: written, payload inside the slot, CRC correct. */
    it->slot = slot;
    it->capacity = read_le32(slot + OFF_CAPACITY);
    if (read_le32(slot + OFF_VERSION) == IDMINT_CRED_VERSION_EMPTY) {
        return IDMINT_CRED_ERR_EMPTY;
    }
    it->payload_len = read_le32(slot + OFF_PAYLOAD_LEN);
    if (it->payload_len > it->capacity - IDMINT_CRED_HEADER_LEN) {
        return IDMINT_CRED_ERR_PAYLOAD_LEN;
    }
    it->payload = slot + IDMINT_CRED_HEADER_LEN;
    if (idmint_cred_crc32(it->payload, it->payload_len) != read_le32(slot + OFF_CRC)) {
        it->payload = NULL;
        return IDMINT_CRED_ERR_CRC;
    }
    it->pos = 0;
    return IDMINT_CRED_OK;
}

idmint_cred_status idmint_cred_next(idmint_cred_iter *it, uint16_t *type, const uint8_t **value, uint32_t *len)
{
    const uint8_t *rec;
    uint32_t remaining;
    uint32_t value_len;

    if (it == NULL || type == NULL || value == NULL || len == NULL || it->payload == NULL) {
        return IDMINT_CRED_ERR_ARGUMENT;
    }
    if (it->pos >= it->payload_len) {
        return IDMINT_CRED_END;
    }
    remaining = it->payload_len - it->pos;
    if (remaining < IDMINT_CRED_RECORD_HEADER_LEN) {
        return IDMINT_CRED_ERR_RECORD;
    }
    rec = it->payload + it->pos;
    value_len = read_le32(rec + 2);
    /* Compare without adding, so a huge length cannot overflow. */
    if (value_len > remaining - IDMINT_CRED_RECORD_HEADER_LEN) {
        return IDMINT_CRED_ERR_RECORD;
    }
    *type = read_le16(rec);
    *value = rec + IDMINT_CRED_RECORD_HEADER_LEN;
    *len = value_len;
    it->pos += IDMINT_CRED_RECORD_HEADER_LEN + value_len;
    return IDMINT_CRED_OK;
}

void idmint_cred_rewind(idmint_cred_iter *it)
{
    if (it != NULL) {
        it->pos = 0;
    }
}

idmint_cred_status idmint_cred_find(const idmint_cred_iter *it, uint16_t type, const uint8_t **value, uint32_t *len)
{
    idmint_cred_iter walk;
    idmint_cred_status st;
    uint16_t t;

    if (it == NULL) {
        return IDMINT_CRED_ERR_ARGUMENT;
    }
    walk = *it;
    walk.pos = 0;
    while ((st = idmint_cred_next(&walk, &t, value, len)) == IDMINT_CRED_OK) {
        if (t == type) {
            return IDMINT_CRED_OK;
        }
    }
    return st;
}

size_t idmint_cred_slot_offset(const idmint_cred_iter *it, const void *region)
{
    if (it == NULL || it->slot == NULL || region == NULL) {
        return 0;
    }
    return (size_t)(it->slot - (const uint8_t *)region);
}

const char *idmint_cred_strerror(idmint_cred_status status)
{
    switch (status) {
    case IDMINT_CRED_OK:
        return "ok";
    case IDMINT_CRED_END:
        return "no more records";
    case IDMINT_CRED_ERR_ARGUMENT:
        return "invalid argument";
    case IDMINT_CRED_ERR_NOT_FOUND:
        return "no credential slot found";
    case IDMINT_CRED_ERR_CAPACITY:
        return "slot capacity out of bounds (truncated slot?)";
    case IDMINT_CRED_ERR_EMPTY:
        return "credential slot is empty (not provisioned)";
    case IDMINT_CRED_ERR_VERSION:
        return "unsupported credential slot version";
    case IDMINT_CRED_ERR_PAYLOAD_LEN:
        return "payload length exceeds slot capacity";
    case IDMINT_CRED_ERR_CRC:
        return "credential slot CRC mismatch (corrupt)";
    case IDMINT_CRED_ERR_RECORD:
        return "truncated record in credential slot";
    }
    return "unknown status";
}
