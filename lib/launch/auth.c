/*
 * auth.c - the job token and the challenge-response that every bridge
 * connection passes before any other frame is accepted.
 *
 * Library: libsodium (crypto_auth_hmacsha256, crypto_hash_sha256,
 * randombytes_buf, sodium_memcmp).  Chosen over OpenSSL's libcrypto for
 * its small, stable API that is hard to misuse: one call computes an
 * HMAC-SHA256, another verifies one in constant time, and randomness
 * comes from the kernel without configuration.  Nothing here is
 * hand-written cryptography.
 *
 * Invariants
 *   - The token never leaves this process in clear: only MACs over fresh
 *     nonces go on the wire.  Buffers that held it are wiped.
 *   - A token file is read only if it is a regular file owned by the
 *     effective user with no group/other permission bits (checked on the
 *     opened descriptor, so a swapped file cannot slip in between).
 *   - Answers are compared in constant time.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "bridge.h"

static const char auth_label[] = "psmem-auth-1";

static int sodium_ready(void)
{
	/* idempotent and thread-safe; < 0 only if no entropy source exists */
	return sodium_init() < 0 ? -EIO : 0;
}

int ps__token_generate(struct ps__token *t)
{
	int rc = sodium_ready();
	if (rc)
		return rc;
	randombytes_buf(t->k, sizeof t->k);
	return 0;
}

int ps__token_write(const char *path, const struct ps__token *t)
{
	char hex[2 * PS__TOKEN_BYTES + 2];
	sodium_bin2hex(hex, sizeof hex - 1, t->k, sizeof t->k);
	size_t n = strlen(hex);
	hex[n++] = '\n';
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	int rc = 0;
	if (write(fd, hex, n) != (ssize_t)n)
		rc = errno ? -errno : -EIO;
	if (close(fd) != 0 && rc == 0)
		rc = -errno;
	sodium_memzero(hex, sizeof hex);
	if (rc)
		unlink(path);
	return rc;
}

int ps__token_parse(const char *text, struct ps__token *t)
{
	const size_t digits = 2 * PS__TOKEN_BYTES;
	for (size_t i = 0; i < digits; i++) {
		char c = text[i];
		bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
		if (!hex)
			return PS_ETOKEN;
	}
	for (const char *p = text + digits; *p; p++)
		if (*p != '\n' && *p != '\r' && *p != ' ' && *p != '\t')
			return PS_ETOKEN;
	size_t got = 0;
	if (sodium_hex2bin(t->k, sizeof t->k, text, digits, NULL, &got, NULL) != 0 || got != sizeof t->k)
		return PS_ETOKEN;
	return 0;
}

int ps__token_load(const char *path, struct ps__token *t, char *why, size_t whylen)
{
	why[0] = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		int e = errno;
		snprintf(why, whylen, "%s", e == ELOOP ? "is a symbolic link" : strerror(e));
		return -e;
	}
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		snprintf(why, whylen, "%s", strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		rc = PS_ETOKENPERM;
		snprintf(why, whylen, "is not a regular file");
	} else if (st.st_uid != geteuid()) {
		rc = PS_ETOKENPERM;
		snprintf(why, whylen, "is owned by uid %u, not by this user (uid %u)", (unsigned)st.st_uid,
			 (unsigned)geteuid());
	} else if (st.st_mode & 077) {
		rc = PS_ETOKENPERM;
		snprintf(why, whylen, "has mode %04o: group or others may read it; run chmod 600 on it",
			 (unsigned)(st.st_mode & 07777));
	}
	if (rc) {
		close(fd);
		return rc;
	}
	char buf[160];
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n < 0) {
		snprintf(why, whylen, "%s", strerror(errno));
		return -errno;
	}
	buf[n] = 0;
	rc = (size_t)n < 2 * PS__TOKEN_BYTES ? PS_ETOKEN : ps__token_parse(buf, t);
	if (rc)
		snprintf(why, whylen, "does not hold a token (want 64 hex digits)");
	sodium_memzero(buf, sizeof buf);
	return rc;
}

void ps__auth_nonce(uint8_t nonce[PS__NONCE_BYTES])
{
	if (sodium_ready() != 0)
		abort(); /* no entropy: a predictable nonce would void the handshake */
	randombytes_buf(nonce, PS__NONCE_BYTES);
}

void ps__auth_mac(const struct ps__token *t, char role, const uint8_t verifier_nonce[PS__NONCE_BYTES],
		  const uint8_t prover_nonce[PS__NONCE_BYTES], uint16_t prover_rank, uint16_t verifier_rank,
		  uint8_t mac[PS__MAC_BYTES])
{
	uint8_t msg[sizeof auth_label - 1 + 1 + 2 * PS__NONCE_BYTES + 4];
	size_t at = 0;
	memcpy(msg, auth_label, sizeof auth_label - 1);
	at += sizeof auth_label - 1;
	msg[at++] = (uint8_t)role;
	memcpy(msg + at, verifier_nonce, PS__NONCE_BYTES);
	at += PS__NONCE_BYTES;
	memcpy(msg + at, prover_nonce, PS__NONCE_BYTES);
	at += PS__NONCE_BYTES;
	ps__put16(msg + at, prover_rank);
	ps__put16(msg + at + 2, verifier_rank);
	at += 4;
	_Static_assert(crypto_auth_hmacsha256_BYTES == PS__MAC_BYTES, "MAC size");
	_Static_assert(crypto_auth_hmacsha256_KEYBYTES == PS__TOKEN_BYTES, "token size");
	crypto_auth_hmacsha256(mac, msg, at, t->k);
}

int ps__auth_verify(const struct ps__token *t, char role, const uint8_t verifier_nonce[PS__NONCE_BYTES],
		    const uint8_t prover_nonce[PS__NONCE_BYTES], uint16_t prover_rank, uint16_t verifier_rank,
		    const uint8_t mac[PS__MAC_BYTES])
{
	uint8_t want[PS__MAC_BYTES];
	ps__auth_mac(t, role, verifier_nonce, prover_nonce, prover_rank, verifier_rank, want);
	/* constant time: the comparison does not reveal where they differ */
	int rc = sodium_memcmp(want, mac, PS__MAC_BYTES) == 0 ? 0 : PS_EAUTH;
	sodium_memzero(want, sizeof want);
	return rc;
}

int ps__hash_file(const char *path, uint8_t out[PS__HASH_BYTES])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	crypto_hash_sha256_state st;
	crypto_hash_sha256_init(&st);
	uint8_t buf[65536];
	ssize_t n;
	while ((n = read(fd, buf, sizeof buf)) > 0)
		crypto_hash_sha256_update(&st, buf, (unsigned long long)n);
	int rc = n < 0 ? -errno : 0;
	close(fd);
	crypto_hash_sha256_final(&st, out);
	return rc;
}
