// nmq_outbox_glue_conf.c: nmq-outbox's glue in NanoMQ's nng/src/supplemental/nanolib/conf_ver2.c (NMQ_OUTBOX builds):
// the bridge's nmq-outbox keys of the configuration file (whole numbers and durations, checked).
// Written once for every NanoMQ line: nanomq_patch/apply.sh copies it next to the file, which
// includes it where its file-local types and functions are known. Not compiled on its own.

// nmq-outbox's keys of a bridge. Absent: *out keeps the default the caller set; a bad value:
// an error line naming the key, and the default.

// `key` as a whole number from min to max
static void
nmq_conf_count(cJSON *obj, const char *bridge, const char *key, double min, double max,
    const char *dflt, uint32_t *out)
{
	cJSON *v = cJSON_GetObjectItem(obj, key);

	if (v == NULL) {
		return;
	}
	if (cJSON_IsNumber(v) && v->valuedouble >= min && v->valuedouble <= max &&
	    v->valuedouble == (double) (uint32_t) v->valuedouble) {
		*out = (uint32_t) v->valuedouble;
		return;
	}
	log_error("bridge %s: %s must be a whole number from %.0f to %.0f, using the default (%s)",
	    bridge, key, min, max, dflt);
}

// `key` as a duration ("500ms", "5s", "2m", "1h": nmq_outbox_parse_duration_ms, which refuses
// what does not fit instead of wrapping) or a whole number of ms, from min to max ms
static void
nmq_conf_duration(cJSON *obj, const char *bridge, const char *key, uint64_t min, uint64_t max,
    const char *dflt, int64_t *out)
{
	cJSON   *v  = cJSON_GetObjectItem(obj, key);
	uint64_t ms = 0;

	if (v == NULL) {
		return;
	}
	if (cJSON_IsString(v) && v->valuestring != NULL) {
		if (nmq_outbox_parse_duration_ms(v->valuestring, max, &ms) == NMQ_OUTBOX_OK &&
		    ms >= min) {
			*out = (int64_t) ms;
			return;
		}
		log_error("bridge %s: %s \"%s\" is not a duration from %llu ms to %llu ms (\"500ms\", "
		          "\"5s\", \"1h\"), using the default (%s)", bridge, key, v->valuestring,
		    (unsigned long long) min, (unsigned long long) max, dflt);
		return;
	}
	if (cJSON_IsNumber(v) && v->valuedouble >= (double) min && v->valuedouble <= (double) max &&
	    v->valuedouble == (double) (uint64_t) v->valuedouble) {
		*out = (int64_t) v->valuedouble;
		return;
	}
	log_error("bridge %s: %s must be a duration (\"500ms\", \"5s\", \"1h\") or a whole number of "
	          "ms from %llu to %llu, using the default (%s)", bridge, key,
	    (unsigned long long) min, (unsigned long long) max, dflt);
}
