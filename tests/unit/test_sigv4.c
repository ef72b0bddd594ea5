#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "common/sigv4.h"

/* The worked examples of AWS's "Signature Calculations for the Authorization
 * Header" page for S3 (examplebucket, us-east-1, 20130524T000000Z): the
 * expected signatures are AWS's, not computed by the code under test. */
#define EXAMPLE_DATE "20130524T000000Z"
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static const sg_sigv4_credentials example_creds = {
    "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1", "s3"};

static char *sign(const char *method, const char *uri, const char *query, const sg_header *headers,
                  size_t nheaders, const char *payload)
{
    sg_sigv4_request req = {method, uri, query, headers, nheaders, payload, EXAMPLE_DATE};
    sg_buf out = {0};
    sg_error err = {0};
    ck_assert_int_eq(sg_sigv4_authorization(&out, &req, &example_creds, &err), 0);
    ck_assert_int_eq(sg_buf_terminate(&out, &err), 0);
    return (char *)out.data;
}

static void assert_auth(char *auth, const char *signed_headers, const char *signature)
{
    char want[512];
    snprintf(want, sizeof(want),
             "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
             "aws4_request, SignedHeaders=%s, Signature=%s",
             signed_headers, signature);
    ck_assert_str_eq(auth, want);
    free(auth);
}

START_TEST(test_aws_example_get_object)
{
    /* Header order given here is not sorted: signing must sort. */
    sg_header h[] = {{"x-amz-date", EXAMPLE_DATE},
                     {"range", "bytes=0-9"},
                     {"host", "examplebucket.s3.amazonaws.com"},
                     {"x-amz-content-sha256", EMPTY_SHA256}};
    assert_auth(sign("GET", "/test.txt", "", h, 4, EMPTY_SHA256),
                "host;range;x-amz-content-sha256;x-amz-date",
                "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}
END_TEST

START_TEST(test_aws_example_put_object)
{
    const char *body = "Welcome to Amazon S3.";
    uint8_t digest[32];
    char payload[SG_SHA256_HEX_LEN];
    sg_buf uri = {0};
    sg_error err = {0};
    sg_sha256(digest, body, strlen(body));
    sg_hex_encode(payload, digest, 32);
    ck_assert_str_eq(payload, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
    ck_assert_int_eq(sg_uri_encode(&uri, "/test$file.text", 1, &err), 0);
    ck_assert_int_eq(sg_buf_terminate(&uri, &err), 0);
    ck_assert_str_eq((char *)uri.data, "/test%24file.text");
    {
        sg_header h[] = {{"host", "examplebucket.s3.amazonaws.com"},
                         {"date", "Fri, 24 May 2013 00:00:00 GMT"},
                         {"x-amz-date", EXAMPLE_DATE},
                         {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
                         {"x-amz-content-sha256", payload}};
        assert_auth(sign("PUT", (char *)uri.data, "", h, 5, payload),
                    "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
                    "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
    }
    sg_buf_free(&uri);
}
END_TEST

static char *query_of(const sg_query_param *params, size_t n)
{
    sg_buf out = {0};
    sg_error err = {0};
    ck_assert_int_eq(sg_sigv4_query(&out, params, n, &err), 0);
    ck_assert_int_eq(sg_buf_terminate(&out, &err), 0);
    return out.data ? (char *)out.data : strdup("");
}

START_TEST(test_aws_example_bare_query)
{
    sg_query_param q[] = {{"lifecycle", NULL}};
    char *query = query_of(q, 1);
    sg_header h[] = {{"host", "examplebucket.s3.amazonaws.com"},
                     {"x-amz-date", EXAMPLE_DATE},
                     {"x-amz-content-sha256", EMPTY_SHA256}};
    ck_assert_str_eq(query, "lifecycle=");
    assert_auth(sign("GET", "/", query, h, 3, EMPTY_SHA256), "host;x-amz-content-sha256;x-amz-date",
                "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
    free(query);
}
END_TEST

START_TEST(test_aws_example_list_objects)
{
    sg_query_param q[] = {{"prefix", "J"}, {"max-keys", "2"}};
    char *query = query_of(q, 2);
    sg_header h[] = {{"host", "examplebucket.s3.amazonaws.com"},
                     {"x-amz-date", EXAMPLE_DATE},
                     {"x-amz-content-sha256", EMPTY_SHA256}};
    ck_assert_str_eq(query, "max-keys=2&prefix=J");
    assert_auth(sign("GET", "/", query, h, 3, EMPTY_SHA256), "host;x-amz-content-sha256;x-amz-date",
                "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
    free(query);
}
END_TEST

/* Query values are encoded with '/' and '=' escaped, and sorted by the
 * encoded name: what is signed is exactly what is sent. */
START_TEST(test_query_encoding_and_order)
{
    sg_query_param q[] = {{"prefix", "shards/a b/"},
                          {"list-type", "2"},
                          {"continuation-token", "1/x+y=="},
                          {"uploads", NULL}};
    char *query = query_of(q, 4);
    ck_assert_str_eq(query,
                     "continuation-token=1%2Fx%2By%3D%3D&list-type=2&prefix=shards%2Fa%20b%2F&"
                     "uploads=");
    free(query);
    ck_assert_str_eq(query = query_of(NULL, 0), "");
    free(query);
}
END_TEST

START_TEST(test_uri_encoding)
{
    sg_buf out = {0};
    sg_error err = {0};
    ck_assert_int_eq(sg_uri_encode(&out, "a-b_c.d~e/f g%h\xc3\xa9", 1, &err), 0);
    ck_assert_int_eq(sg_uri_encode(&out, "/", 0, &err), 0);
    ck_assert_int_eq(sg_buf_terminate(&out, &err), 0);
    ck_assert_str_eq((char *)out.data, "a-b_c.d~e/f%20g%25h%C3%A9%2F");
    sg_buf_free(&out);
}
END_TEST

/* Blanks around and inside header values are folded before signing, so a
 * header sent as "a  b " signs like "a b". */
START_TEST(test_header_values_trimmed)
{
    sg_header loose[] = {{"host", "examplebucket.s3.amazonaws.com"},
                         {"range", "  bytes=0-9 "},
                         {"x-amz-date", EXAMPLE_DATE},
                         {"x-amz-content-sha256", EMPTY_SHA256},
                         {"x-amz-meta-note", "a   b\t c"}};
    sg_header tight[] = {{"host", "examplebucket.s3.amazonaws.com"},
                         {"range", "bytes=0-9"},
                         {"x-amz-date", EXAMPLE_DATE},
                         {"x-amz-content-sha256", EMPTY_SHA256},
                         {"x-amz-meta-note", "a b c"}};
    char *a = sign("GET", "/test.txt", "", loose, 5, EMPTY_SHA256);
    char *b = sign("GET", "/test.txt", "", tight, 5, EMPTY_SHA256);
    ck_assert_str_eq(a, b);
    free(a);
    free(b);
}
END_TEST

/* Anything that changes what was signed changes the signature. */
START_TEST(test_signature_covers_request)
{
    sg_header h[] = {{"host", "examplebucket.s3.amazonaws.com"},
                     {"x-amz-date", EXAMPLE_DATE},
                     {"x-amz-content-sha256", EMPTY_SHA256}};
    sg_header other_host[] = {{"host", "otherbucket.s3.amazonaws.com"},
                              {"x-amz-date", EXAMPLE_DATE},
                              {"x-amz-content-sha256", EMPTY_SHA256}};
    char *base = sign("GET", "/a", "", h, 3, EMPTY_SHA256);
    char *variants[] = {
        sign("PUT", "/a", "", h, 3, EMPTY_SHA256),
        sign("GET", "/b", "", h, 3, EMPTY_SHA256),
        sign("GET", "/a", "x=1", h, 3, EMPTY_SHA256),
        sign("GET", "/a", "", other_host, 3, EMPTY_SHA256),
        sign("GET", "/a", "", h, 3,
             "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"),
    };
    for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
        ck_assert_msg(strcmp(base, variants[i]) != 0, "variant %zu signs the same", i);
        free(variants[i]);
    }
    free(base);
}
END_TEST

START_TEST(test_bad_headers_refused)
{
    sg_header upper[] = {{"Host", "x"}, {"x-amz-date", EXAMPLE_DATE}};
    sg_header twice[] = {{"host", "x"}, {"x-amz-date", EXAMPLE_DATE}, {"host", "y"}};
    sg_sigv4_request req = {"GET", "/", "", upper, 2, EMPTY_SHA256, EXAMPLE_DATE};
    sg_buf out = {0};
    sg_error err = {0};
    ck_assert_int_eq(sg_sigv4_authorization(&out, &req, &example_creds, &err), SG_E_USAGE);
    ck_assert_ptr_nonnull(strstr(err.message, "\"Host\" is not lowercase"));
    req.headers = twice;
    req.nheaders = 3;
    ck_assert_int_eq(sg_sigv4_authorization(&out, &req, &example_creds, &err), SG_E_USAGE);
    ck_assert_ptr_nonnull(strstr(err.message, "\"host\" given twice"));
    sg_buf_free(&out);
}
END_TEST

START_TEST(test_out_of_memory)
{
    sg_header h[] = {{"host", "examplebucket.s3.amazonaws.com"},
                     {"x-amz-date", EXAMPLE_DATE},
                     {"x-amz-content-sha256", EMPTY_SHA256}};
    sg_query_param q[] = {{"prefix", "J"}, {"max-keys", "2"}};
    sg_sigv4_request req = {"GET", "/", "", h, 3, EMPTY_SHA256, EXAMPLE_DATE};
    int ok_sign = 0, ok_query = 0;
    for (long n = 0; n < 200 && !(ok_sign && ok_query); n++) {
        sg_buf out = {0};
        sg_error err = {0};
        int rc;
        sg_mem_fail_after(n);
        rc = sg_sigv4_authorization(&out, &req, &example_creds, &err);
        sg_mem_fail_reset();
        ck_assert(rc == 0 || rc == SG_E_NOMEM);
        ok_sign |= rc == 0;
        sg_buf_free(&out);
        sg_mem_fail_after(n);
        rc = sg_sigv4_query(&out, q, 2, &err);
        sg_mem_fail_reset();
        ck_assert(rc == 0 || rc == SG_E_NOMEM);
        ok_query |= rc == 0;
        sg_buf_free(&out);
    }
    ck_assert(ok_sign && ok_query);
}
END_TEST

START_TEST(test_amz_date)
{
    char date[SG_AMZ_DATE_LEN];
    sg_amz_date(date, 1369353600); /* 2013-05-24 00:00:00 UTC */
    ck_assert_str_eq(date, EXAMPLE_DATE);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sigv4");
    TCase *aws = tcase_create("aws_examples");
    TCase *canon = tcase_create("canonical_form");
    TCase *errors = tcase_create("errors");
    tcase_add_test(aws, test_aws_example_get_object);
    tcase_add_test(aws, test_aws_example_put_object);
    tcase_add_test(aws, test_aws_example_bare_query);
    tcase_add_test(aws, test_aws_example_list_objects);
    tcase_add_test(canon, test_query_encoding_and_order);
    tcase_add_test(canon, test_uri_encoding);
    tcase_add_test(canon, test_header_values_trimmed);
    tcase_add_test(canon, test_signature_covers_request);
    tcase_add_test(canon, test_amz_date);
    tcase_add_test(errors, test_bad_headers_refused);
    tcase_add_test(errors, test_out_of_memory);
    suite_add_tcase(s, aws);
    suite_add_tcase(s, canon);
    suite_add_tcase(s, errors);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
