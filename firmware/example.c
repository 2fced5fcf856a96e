/*
 * example.c - print the records of a credential slot found in a file.
 *
 * Build and run on a host:  cc -std=c99 -Wall -Wextra example.c idmint_cred.c -o example
 *                           ./example device-0001.bin
 * On a device, pass the flash region that holds the slot to idmint_cred_open()
 * instead of a file buffer.
 */
#include <stdio.h>
#include <stdlib.h>

#include "idmint_cred.h"

int main(int argc, char **argv)
{
    static uint8_t image[4u * 1024u * 1024u];
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
    n = fread(image, 1, sizeof(image), f);
    fclose(f);

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
