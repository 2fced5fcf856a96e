/*
 * example.c - print the records of a credential slot found in a file.
 *
 * Build and run on a host:  cc -std=c99 -Wall -Wextra example.c idmint_cred.c -o example
 *                           ./example device-0001.bin
 *                           ./example device-0001.hex
 * A raw image (bin, ELF, blob) is searched as it is; an Intel HEX file (one
 * that starts with ':') is first laid out as the flash it describes, from its
 * lowest address, as a programmer would write it.
 * On a device, pass the flash region that holds the slot to idmint_cred_open()
 * instead of a file buffer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idmint_cred.h"

#define IMAGE_MAX (4u * 1024u * 1024u)

static int hex_digit(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/*
 * Lays the Intel HEX text in[0..n) out as flash in out[0..IMAGE_MAX), from
 * the lowest data address (gaps read 0xFF, as erased flash). Record types
 * 00 (data), 01 (end), 02 (extended segment address) and 04 (extended
 * linear address) are applied; 03 and 05 (start addresses) are skipped.
 * Returns the image length, or 0 with a message on stderr for a malformed
 * file (a bad digit or checksum, a record past the buffer).
 */
static size_t load_intel_hex(const uint8_t *in, size_t n, uint8_t *out)
{
    unsigned long base = 0, lowest = 0, end = 0;
    int have_lowest = 0;
    size_t pos = 0, line = 0;
    uint8_t rec[5 + 255];

    memset(out, 0xFF, IMAGE_MAX);
    while (pos < n) {
        size_t len, i;
        unsigned sum = 0, type, count;
        unsigned long addr;

        if (in[pos] == '\r' || in[pos] == '\n') { pos++; continue; }
        line++;
        if (in[pos] != ':') {
            fprintf(stderr, "error: HEX line %lu does not start with ':'\n", (unsigned long)line);
            return 0;
        }
        pos++;
        for (len = 0; pos + 1 < n && len < sizeof(rec); len++, pos += 2) {
            int hi = hex_digit(in[pos]), lo = hex_digit(in[pos + 1]);
            if (hi < 0 || lo < 0) break;
            rec[len] = (uint8_t)(hi * 16 + lo);
            sum += rec[len];
        }
        if (len < 5 || len != 5u + rec[0] || (sum & 0xFFu) != 0) {
            fprintf(stderr, "error: HEX line %lu is malformed or fails its checksum\n", (unsigned long)line);
            return 0;
        }
        count = rec[0];
        addr = ((unsigned long)rec[1] << 8) | rec[2];
        type = rec[3];
        if (type == 0x01) break;
        if (type == 0x02 || type == 0x04) {
            if (count != 2) {
                fprintf(stderr, "error: HEX line %lu: bad address record\n", (unsigned long)line);
                return 0;
            }
            base = (((unsigned long)rec[4] << 8) | rec[5]) << (type == 0x02 ? 4 : 16);
            continue;
        }
        if (type != 0x00) continue;
        addr += base;
        if (!have_lowest) { lowest = addr; have_lowest = 1; }
        if (addr < lowest || addr - lowest + count > IMAGE_MAX) {
            fprintf(stderr, "error: HEX line %lu: data outside the %u-byte buffer (addresses must ascend from the first)\n",
                    (unsigned long)line, IMAGE_MAX);
            return 0;
        }
        for (i = 0; i < count; i++) out[addr - lowest + i] = rec[4 + i];
        if (addr - lowest + count > end) end = addr - lowest + count;
    }
    return (size_t)end;
}

int main(int argc, char **argv)
{
    static uint8_t file[IMAGE_MAX];
    static uint8_t flash[IMAGE_MAX];
    uint8_t *image = file;
    idmint_cred_iter it;
    idmint_cred_status st;
    uint16_t type;
    const uint8_t *value;
    uint32_t len;
    size_t n;
    FILE *f;

    if (argc != 2 || (f = fopen(argv[1], "rb")) == NULL) {
        fprintf(stderr, "usage: %s IMAGE\n", argv[0]);
        return 2;
    }
    n = fread(file, 1, sizeof(file), f);
    fclose(f);
    if (n > 0 && file[0] == ':') {
        n = load_intel_hex(file, n, flash);
        if (n == 0) return 1;
        image = flash;
    }

    st = idmint_cred_open(&it, image, n);
    if (st != IDMINT_CRED_OK) {
        fprintf(stderr, "error: %s\n", idmint_cred_strerror(st));
        return 1;
    }
    printf("slot at offset %lu\n", (unsigned long)idmint_cred_slot_offset(&it, image));
    while ((st = idmint_cred_next(&it, &type, &value, &len)) == IDMINT_CRED_OK) {
        if (type == IDMINT_CRED_DEVICE_ID || type == IDMINT_CRED_ENDPOINT || type == IDMINT_CRED_THING_NAME) {
            printf("type %u: %.*s\n", (unsigned)type, (int)len, (const char *)value);
        } else {
            printf("type %u: %lu bytes\n", (unsigned)type, (unsigned long)len);
        }
    }
    if (st != IDMINT_CRED_END) {
        fprintf(stderr, "error: %s\n", idmint_cred_strerror(st));
        return 1;
    }
    return EXIT_SUCCESS;
}
