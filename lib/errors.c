/*
 * errors.c - names of return codes.  psmem's codes live in a reserved
 * negative band (PS_EBASE downwards) beside -errno values, as LMDB does.
 */
#include <string.h>

#include "psmem.h"

static const char *const names[] = {
	[0] = "key outside the table's key range",
	[1] = "not a table of this job",
	[2] = "arena full: no free slot on that node",
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
	[13] = "frame truncated (connection ended inside it)",
	[14] = "not a psmem frame (bad magic)",
	[15] = "frame of an unsupported protocol version",
	[16] = "unknown frame type",
	[17] = "frame over the size limit",
	[18] = "frame checksum mismatch",
	[19] = "frame payload malformed for its type",
	[20] = "peer failed authentication (wrong job token)",
	[21] = "job token malformed (want 64 hex digits)",
	[22] = "job token file not private (want mode 0600, owned by this user)",
	[23] = "a peer host failed or left the job",
};

const char *ps_strerror(int err)
{
	if (err == 0)
		return "success";
	if (err <= PS_EBASE && err >= PS_ELAST)
		return names[PS_EBASE - err];
	if (err < 0)
		return strerror(-err);
	return "unknown error";
}
