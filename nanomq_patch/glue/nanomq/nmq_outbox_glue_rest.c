// nmq_outbox_glue_rest.c: nmq-outbox's glue in NanoMQ's nanomq/rest_api.c (NMQ_OUTBOX builds):
// R1, R2: the outbox in the REST API's bridge JSON and its Prometheus text.
// Written once for every NanoMQ line: nanomq_patch/apply.sh copies it next to the file, which
// includes it where its file-local types and functions are known. Not compiled on its own.

// R1: the outbox of a bridge node of the global configuration, or NULL (no cache block, not
// started). The handle lives until exit (it survives reloads and hybrid switches).
static nmq_outbox *
rest_bridge_outbox(conf_bridge_node *node)
{
	bridge_param *bp = node != NULL ? node->bridge_arg : NULL;
	return (bp != NULL ? bp->outbox : NULL);
}

// R1: GET /api/v4/bridges[/<name>]: each node gets "outbox", the counters of its outbox as
// nmq_outbox_stats_json() gives them, or null when the bridge has none.
static void
rest_bridge_add_outbox(cJSON *bridge_json, conf_bridge *bridge)
{
	cJSON *nodes = cJSON_GetObjectItem(bridge_json, "nodes");
	cJSON *item  = NULL;

	cJSON_ArrayForEach(item, nodes)
	{
		cJSON      *name = cJSON_GetObjectItem(item, "name");
		nmq_outbox *ob   = NULL;
		cJSON      *obj  = NULL;

		for (size_t i = 0; cJSON_IsString(name) && i < bridge->count; i++) {
			if (strcmp(bridge->nodes[i]->name, name->valuestring) == 0) {
				ob = rest_bridge_outbox(bridge->nodes[i]);
				break;
			}
		}
		if (ob != NULL) {
			char   small[1024];
			char  *buf = small;
			size_t len = 0;
			nmq_outbox_result rv = nmq_outbox_stats_json(ob, small, sizeof(small), &len);
			if (rv == NMQ_OUTBOX_ETOOBIG && (buf = nng_alloc(len += 256)) != NULL) {
				size_t need = 0;
				rv = nmq_outbox_stats_json(ob, buf, len, &need);
			}
			if (rv == NMQ_OUTBOX_OK && buf != NULL) {
				obj = cJSON_Parse(buf);
			} else {
				log_warn("bridge [%s]: outbox stats: %s", name->valuestring,
				    nmq_outbox_strerror(rv));
			}
			if (buf != small && buf != NULL) {
				nng_free(buf, len);
			}
		}
		cJSON_AddItemToObject(item, "outbox", obj != NULL ? obj : cJSON_CreateNull());
	}
}

// R2: GET /api/v4/prometheus: NanoMQ's metrics followed by the outbox families of every
// outbox open (nmq_outbox_stats_prometheus_all). Returns a buffer to nng_free(*sz), or NULL
// (then only NanoMQ's own metrics are served).
static char *
rest_prometheus_outbox(const char *head, size_t *sz)
{
	size_t len = 0, need = 0, hl = strlen(head), cap;
	char  *buf;

	if (nmq_outbox_stats_prometheus_all(NULL, 0, &len) != NMQ_OUTBOX_ETOOBIG || len <= 1) {
		return (NULL); // no outbox
	}
	cap = hl + 1 + len + 256; // a newline after NanoMQ's text; room for growing counters
	if ((buf = nng_alloc(cap)) == NULL) {
		return (NULL);
	}
	memcpy(buf, head, hl);
	if (hl > 0 && head[hl - 1] != '\n') {
		buf[hl++] = '\n';
	}
	if (nmq_outbox_stats_prometheus_all(buf + hl, cap - hl, &need) != NMQ_OUTBOX_OK) {
		nng_free(buf, cap);
		return (NULL);
	}
	*sz = cap;
	return (buf);
}
