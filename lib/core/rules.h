/* PRIVATE to libpsmem: rules.h - server-side update rules (rules.c) */
#ifndef PSMEM_CORE_RULES_H
#define PSMEM_CORE_RULES_H

#include "world.h"

/* rules.c */
struct ps__rule_info {
	uint32_t state_len;       /* floats of state per slot for this value_len */
	uint64_t fp;              /* fingerprint: name and state sizes */
	ps_rule_fn fn;            /* custom rules */
};
/* Checks the rule options (-EINVAL, PS_EHOGWILD): bad input, local. */
int ps__rule_check(const ps_table_opts *o);
/* Resolves a checked rule in this process: PS_ERULE if not registered. */
int ps__rule_resolve(const ps_table_opts *o, struct ps__rule_info *out);
/* Applies one pushed update to a locked slot (not for PS_RULE_SUM). */
void ps__rule_apply(const ps_table *t, struct ps__slot *sl, const float *upd);
/* The custom rule function registered in this process for rule id, else NULL. */
ps_rule_fn ps__rule_fn(uint32_t rule);

#endif /* PSMEM_CORE_RULES_H */
