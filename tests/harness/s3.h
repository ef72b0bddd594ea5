/* Test harness: a private S3 service for one test process. s3rver (an S3
 * server from npm) stores the objects; tests/harness/s3/proxy.js stands in
 * front of it, checks every request's SigV4 signature and payload hashes with
 * AWS's own signer, keeps the multipart bookkeeping s3rver lacks (abort, part
 * sizes), and injects the faults a test scripts (a 503 on the 3rd part, a
 * reset mid-body...). Clients under test talk to the proxy.
 *
 * Start it once per process, in main() or an unchecked fixture, like the
 * PostgreSQL harness: Check forks a process per test. Both servers listen on
 * 127.0.0.1, accept the fixed credentials S3RVER / S3RVER in any region, die
 * with the process that started them and are stopped at exit. Failures end
 * the test (or the process) with a message; nothing here returns an error. */
#ifndef SG_TESTS_HARNESS_S3_H
#define SG_TESTS_HARNESS_S3_H

#define SGT_S3_ACCESS_KEY "S3RVER"
#define SGT_S3_SECRET_KEY "S3RVER"
#define SGT_S3_REGION "us-east-1"

typedef struct sgt_s3 sgt_s3;

/* Starts s3rver on a new temporary directory with bucket already created,
 * and the proxy in front of it; min_part_size is the smallest part but the
 * last that the proxy lets CompleteMultipartUpload accept (0 for S3's 5 MiB).
 * Exits the process with a hint when node or the npm packages are missing. */
sgt_s3 *sgt_s3_start(const char *bucket, long min_part_size);

/* Starts s3rver alone serving HTTPS with the given PEM certificate and key,
 * for TLS tests: there is no proxy, so no signature checks, faults or log;
 * sgt_s3_endpoint is "https://127.0.0.1:PORT". */
sgt_s3 *sgt_s3_start_tls(const char *bucket, const char *cert_file, const char *key_file);

/* Stops both servers and removes the directory. Only the process that
 * started them stops them; in a forked test this does nothing. NULL is a
 * no-op. */
void sgt_s3_stop(sgt_s3 *s3);

/* "http://127.0.0.1:PORT" of the verifying proxy: what clients under test use. */
const char *sgt_s3_endpoint(const sgt_s3 *s3);

/* s3rver itself: no signature checks, no faults, no log. */
const char *sgt_s3_direct_endpoint(const sgt_s3 *s3);

/* s3rver's data directory (one subdirectory per bucket). */
const char *sgt_s3_data_dir(const sgt_s3 *s3);

/* The bucket created at start. */
const char *sgt_s3_bucket(const sgt_s3 *s3);

/* Replaces the proxy's fault script (a JSON array of rules, see proxy.js;
 * "[]" clears it) and resets the rules' counters. A script the proxy refuses
 * aborts the test with its reason. */
void sgt_s3_set_faults(sgt_s3 *s3, const char *json);

/* The proxy's log of S3 requests since the last clear: a JSON array of
 * {method, path, query, bodyLength, status, fault, rule}; free() it. */
char *sgt_s3_log(sgt_s3 *s3);

void sgt_s3_clear_log(sgt_s3 *s3);

/* How many logged requests have this method and status and contain
 * query_substring in their raw query string; NULL or 0 matches anything. */
int sgt_s3_count(sgt_s3 *s3, const char *method, const char *query_substring, int status);

/* Multipart uploads created through the proxy and neither completed nor
 * aborted. */
int sgt_s3_open_uploads(sgt_s3 *s3);

/* Points the AWS environment variables at the proxy: AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_DEFAULT_REGION and
 * AWS_ENDPOINT_URL_S3 are set; session tokens, profiles, credential files and
 * other endpoint variables are removed, so nothing from the machine leaks in. */
void sgt_s3_setenv(const sgt_s3 *s3);

/* Runs s3cmd, an independent S3 client, against the proxy with a private
 * configuration (path-style, http, SigV4, us-east-1), argv being its
 * arguments after the program name; returns its stdout, to free(). A non-zero
 * exit aborts the test with s3cmd's stderr. */
char *sgt_s3cmd(sgt_s3 *s3, const char *const argv[]);

/* The configuration file sgt_s3cmd uses, for running s3cmd with sgt_run
 * ("s3cmd -c FILE ...") when a failure is the expected outcome. */
const char *sgt_s3cmd_config(const sgt_s3 *s3);

#endif
