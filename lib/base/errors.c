/*
 * errors.c - names of return codes.  psmem's codes live in a reserved
 * negative band (PS_EBASE downwards, psmem.h says why there) beside -errno
 * values, as LMDB does.
 */
#include <limits.h>
#include <string.h>

#include "psmem.h"

static const char *const names[] = {
	[0] = "key outside the table's key range",
	[1] = "not a table of this job",
	[2] = "arena full: no free slot on that node (pool: slots_per_node; memory: psrun --mem/--arena-size)",
	[3] = "job segment does not exist",
	[4] = "not a psmem segment (bad magic or size)",
	[5] = "segment made by an incompatible psmem version (ABI or layout)",
	[6] = "segment belongs to another user",
	[7] = "nodes disagree on a collective call",
	[8] = "a node of the job died",
	[9] = "node id outside the job",
	[10] = "table limit of the segment reached",
	[11] = "segment has no room left for the table",
	[12] = "invalid or already-waited handle",
	[13] = "replica capacity of the table exhausted (repl_max)",
	[14] = "sampling weight is negative, NaN or infinite",
	[15] = "sampling weights are all zero",
	[16] = "distribution was built for another table",
	[17] = "bad sampling scheme: expected naive, local, pool or pool:U with U in 1..65536",
	[18] = "more samples asked than the sampler has left",
	[19] = "update rule not registered in this process, or registered differently on another node",
	[20] = "PS_HOGWILD tables take only the sum update rule",
	[21] = "checkpoint file unusable (not a checkpoint, other version, truncated or corrupted)",
	[22] = "checkpoint holds other tables than the job's",
	[23] = "frame truncated (connection ended inside it)",
	[24] = "not a psmem frame (bad magic)",
	[25] = "frame of an unsupported protocol version",
	[26] = "unknown frame type",
	[27] = "frame over the size limit",
	[28] = "frame checksum mismatch",
	[29] = "frame payload malformed for its type",
	[30] = "peer failed authentication (wrong job token)",
	[31] = "job token malformed (want 64 hex digits)",
	[32] = "job token file not private (want mode 0600, owned by this user)",
	[33] = "a peer host failed or left the job",
	[34] = "a node of the job already finalized (exited normally) and cannot arrive",
};

/* One name per code, no gap: a code added to psmem.h without its name (or
 * a name without its code) does not compile. */
_Static_assert(sizeof names / sizeof names[0] == PS_EBASE - PS_ELAST + 1,
	       "ps_strerror's name table must have one entry per code PS_EBASE..PS_ELAST");

/*
 * Every text returned is a string constant: two calls in one printf never
 * share a buffer, and no call can be overwritten by a later one (glibc's
 * strerror formats unknown numbers into one static buffer).  An errno
 * value gets glibc's description (strerrordesc_np: a constant, the text
 * strerror prints in the C locale); anything else the fixed text below.
 */
const char *ps_strerror(int err)
{
	if (err == 0)
		return "success";
	if (err <= PS_EBASE && err >= PS_ELAST)
		return names[PS_EBASE - err];
	/* err > INT_MIN: -err must not overflow */
	const char *d = err < 0 && err > INT_MIN ? strerrordesc_np(-err) : NULL;
	return d ? d : "unknown psmem error code (neither a psmem code nor -errno)";
}
