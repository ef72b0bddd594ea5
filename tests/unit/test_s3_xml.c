#include <check.h>
#include <expat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "common/s3_xml.h"

#define S3_NS "http://s3.amazonaws.com/doc/2006-03-01/"

/* Documents as AWS, MinIO and R2 send them. */

static const char aws_error[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<Error>\n"
    "  <Code>NoSuchKey</Code>\n"
    "  <Message>The resource you requested does not exist</Message>\n"
    "  <Resource>/mybucket/myfoto.jpg</Resource>\n"
    "  <RequestId>4442587FB7D0A2F9</RequestId>\n"
    "  <HostId>Uuag1LuByRx9e6j5Onimru9pO4ZVKnJ2Qz7/C1NPcfTWAtRPfTaOFg==</HostId>\n"
    "</Error>\n";

static const char minio_error[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message>"
    "<BucketName>nope</BucketName><Resource>/nope/</Resource>"
    "<RequestId>17A2B3C4D5E6F789</RequestId>"
    "<HostId>dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8</HostId></Error>";

static const char list_page[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<ListBucketResult xmlns=\"" S3_NS "\">\n"
    "    <Name>shardgate-test</Name>\n"
    "    <Prefix>shards/s1/</Prefix>\n"
    "    <KeyCount>3</KeyCount>\n"
    "    <MaxKeys>3</MaxKeys>\n"
    "    <IsTruncated>true</IsTruncated>\n"
    "    "
    "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>\n"
    "    <Contents>\n"
    "        <Key>shards/s1/snapshots/a/manifest</Key>\n"
    "        <LastModified>2024-05-01T10:00:00.000Z</LastModified>\n"
    "        <ETag>&quot;70ee1738b6b21e2c8a43f3a5ab0eee71&quot;</ETag>\n"
    "        <ChecksumAlgorithm>CRC32</ChecksumAlgorithm>\n"
    "        <Size>434234</Size>\n"
    "        <StorageClass>STANDARD</StorageClass>\n"
    "    </Contents>\n"
    "    <Contents>\n"
    "        <Key>shards/s1/snapshots/a/packs/0.pack</Key>\n"
    "        <LastModified>2024-05-01T10:00:00.000Z</LastModified>\n"
    "        <ETag>&quot;3858f62230ac3c915f300c664312c11f-9&quot;</ETag>\n"
    "        <Size>0</Size>\n"
    "        <Owner><ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID>"
    "<DisplayName>ops</DisplayName></Owner>\n"
    "        <StorageClass>STANDARD</StorageClass>\n"
    "    </Contents>\n"
    "    <Contents>\n"
    "        <Key>shards/s1/snapshots/a/packs/1.pack</Key>\n"
    "        <Size>18446744073709551615</Size>\n"
    "    </Contents>\n"
    "    <CommonPrefixes><Prefix>shards/s1/runs/</Prefix></CommonPrefixes>\n"
    "</ListBucketResult>\n";

static const char r2_empty_list[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult xmlns=\"" S3_NS "\">"
    "<Name>b</Name><Prefix>shards/none/</Prefix><KeyCount>0</KeyCount>"
    "<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>";

static const char initiate[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<InitiateMultipartUploadResult xmlns=\"" S3_NS "\">\n"
    "  <Bucket>example-bucket</Bucket>\n"
    "  <Key>example-object</Key>\n"
    "  <UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId>\n"
    "</InitiateMultipartUploadResult>";

/* The keep-alive spaces AWS sends before a slow answer, then the answer. */
static const char complete_ok[] =
    "      \n"
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<CompleteMultipartUploadResult xmlns=\"" S3_NS "\">\n"
    "  <Location>https://example-bucket.s3.amazonaws.com/example-object</Location>\n"
    "  <Bucket>example-bucket</Bucket>\n"
    "  <Key>example-object</Key>\n"
    "  <ETag>\"3858f62230ac3c915f300c664312c11f-9\"</ETag>\n"
    "</CompleteMultipartUploadResult>";

static const char complete_error[] =
    "   \n   \n"
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\n"
    "<Error>\n"
    "  <Code>InternalError</Code>\n"
    "  <Message>We encountered an internal error. Please try again.</Message>\n"
    "  <RequestId>656c76696e6727732072657175657374</RequestId>\n"
    "  <HostId>Uuag1LuByRx9e6j5Onimru9pO4ZVKnJ2Qz7/C1NPcfTWAtRPfTaOFg==</HostId>\n"
    "</Error>";

static const char nginx_502[] =
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n"
    "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/* A listing whose only object has the given Key and Size elements' text. */
static char *list_with(const char *key, const char *size)
{
    char *doc = NULL;
    ck_assert_int_ge(
        asprintf(&doc,
                 "<ListBucketResult xmlns=\"" S3_NS "\"><IsTruncated>false</IsTruncated>"
                 "<Contents><Key>%s</Key><Size>%s</Size></Contents></ListBucketResult>",
                 key, size),
        0);
    return doc;
}

static int parse_list_str(sg_s3_list_page *page, const char *doc, sg_error *err)
{
    return sg_s3_xml_parse_list(page, doc, strlen(doc), err);
}

/* Refused with SG_E_FORMAT, the message naming the problem, and nothing kept. */
static void assert_list_refused(const char *doc, const char *message)
{
    sg_s3_list_page page = {0};
    sg_error err = {0};
    ck_assert_int_eq(parse_list_str(&page, doc, &err), SG_E_FORMAT);
    ck_assert_str_eq(err.message, message);
    ck_assert_ptr_null(page.objects);
    ck_assert_uint_eq(page.count, 0);
    ck_assert_ptr_null(page.next_token);
}

START_TEST(test_error_documents)
{
    sg_s3_error_doc doc;
    ck_assert_int_eq(sg_s3_xml_parse_error(&doc, aws_error, strlen(aws_error)), 0);
    ck_assert_str_eq(doc.code, "NoSuchKey");
    ck_assert_str_eq(doc.message, "The resource you requested does not exist");
    ck_assert_str_eq(doc.request_id, "4442587FB7D0A2F9");

    ck_assert_int_eq(sg_s3_xml_parse_error(&doc, minio_error, strlen(minio_error)), 0);
    ck_assert_str_eq(doc.code, "NoSuchBucket");
    ck_assert_str_eq(doc.message, "The specified bucket does not exist");
    ck_assert_str_eq(doc.request_id, "17A2B3C4D5E6F789");

    /* Namespaced, prefixed, and a Code below Error/Code's level that must not
     * count: only Error/Code is the code. */
    {
        const char ns[] = "<Error xmlns=\"" S3_NS "\"><Code>SlowDown</Code></Error>";
        const char prefixed[] =
            "<s3:Error xmlns:s3=\"" S3_NS "\"><s3:Resource><s3:Code>Deep</s3:Code>"
            "</s3:Resource><s3:Code>AccessDenied</s3:Code>"
            "<s3:Message>Access Denied</s3:Message></s3:Error>";
        ck_assert_int_eq(sg_s3_xml_parse_error(&doc, ns, strlen(ns)), 0);
        ck_assert_str_eq(doc.code, "SlowDown");
        ck_assert_str_eq(doc.message, "");
        ck_assert_str_eq(doc.request_id, "");
        ck_assert_int_eq(sg_s3_xml_parse_error(&doc, prefixed, strlen(prefixed)), 0);
        ck_assert_str_eq(doc.code, "AccessDenied");
        ck_assert_str_eq(doc.message, "Access Denied");
    }
}
END_TEST

/* A value longer than its field is cut before a character, not inside one. */
START_TEST(test_error_long_values)
{
    sg_s3_error_doc doc;
    char message[511 + 2 + 1], *body = NULL;
    memset(message, 'a', 510);
    memcpy(message + 510, "\xc3\xa9", 2); /* é straddles the 511-byte limit */
    message[512] = '\0';
    ck_assert_int_ge(
        asprintf(&body, "<Error><Code>SlowDown</Code><Message>%s</Message></Error>", message), 0);
    ck_assert_int_eq(sg_s3_xml_parse_error(&doc, body, strlen(body)), 0);
    ck_assert_uint_eq(strlen(doc.message), 510);
    ck_assert_int_eq(strspn(doc.message, "a"), 510);
    free(body);

    /* The same one byte shorter fits whole. */
    message[511] = '\0';
    memcpy(message + 509, "\xc3\xa9", 2);
    ck_assert_int_ge(
        asprintf(&body, "<Error><Code>SlowDown</Code><Message>%s</Message></Error>", message), 0);
    ck_assert_int_eq(sg_s3_xml_parse_error(&doc, body, strlen(body)), 0);
    ck_assert_str_eq(doc.message, message);
    free(body);
}
END_TEST

/* Whatever is not an S3 error document: the caller falls back to the status. */
START_TEST(test_error_refusals)
{
    static const char *const bodies[] = {
        "",
        "   \r\n",
        "Service Unavailable",
        "<html><body>oops</body></html>",
        nginx_502,
        "<!DOCTYPE html><html><body>oops</body></html>",
        "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>trunc",
        "<Error><Message>no code</Message></Error>",
        "<Error><Code></Code></Error>",
        "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        sg_s3_error_doc doc;
        memset(&doc, 'x', sizeof(doc));
        ck_assert_msg(sg_s3_xml_parse_error(&doc, bodies[i], strlen(bodies[i])) == SG_E_FORMAT,
                      "body %zu accepted", i);
        ck_assert_str_eq(doc.code, "");
        ck_assert_str_eq(doc.message, "");
        ck_assert_str_eq(doc.request_id, "");
    }
}
END_TEST

START_TEST(test_list_page)
{
    sg_s3_list_page page = {0};
    sg_error err = {0};
    ck_assert_int_eq(parse_list_str(&page, list_page, &err), 0);
    ck_assert_uint_eq(page.count, 3);
    ck_assert_str_eq(page.objects[0].key, "shards/s1/snapshots/a/manifest");
    ck_assert_uint_eq(page.objects[0].size, 434234);
    ck_assert_str_eq(page.objects[1].key, "shards/s1/snapshots/a/packs/0.pack");
    ck_assert_uint_eq(page.objects[1].size, 0);
    ck_assert_str_eq(page.objects[2].key, "shards/s1/snapshots/a/packs/1.pack");
    ck_assert_uint_eq(page.objects[2].size, UINT64_MAX);
    ck_assert(page.truncated);
    ck_assert_str_eq(page.next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
    sg_s3_list_page_clear(&page);
    ck_assert_ptr_null(page.objects);
    ck_assert_uint_eq(page.count, 0);
    ck_assert_ptr_null(page.next_token);
    sg_s3_list_page_clear(&page);
    sg_s3_list_page_clear(NULL);
}
END_TEST

/* An empty listing: no objects, not truncated, pretty-printed and compact. */
START_TEST(test_list_empty)
{
    static const char pretty[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                                 "<ListBucketResult xmlns=\"" S3_NS "\">\n"
                                 "  <Name>b</Name>\n"
                                 "  <Prefix>shards/none/</Prefix>\n"
                                 "  <KeyCount>0</KeyCount>\n"
                                 "  <MaxKeys>1000</MaxKeys>\n"
                                 "  <IsTruncated>false</IsTruncated>\n"
                                 "</ListBucketResult>\n";
    const char *const docs[] = {pretty, r2_empty_list};
    for (size_t i = 0; i < 2; i++) {
        sg_s3_list_page page = {0};
        sg_error err = {0};
        ck_assert_int_eq(parse_list_str(&page, docs[i], &err), 0);
        ck_assert_uint_eq(page.count, 0);
        ck_assert_ptr_null(page.objects);
        ck_assert(!page.truncated);
        ck_assert_ptr_null(page.next_token);
        sg_s3_list_page_clear(&page);
    }
}
END_TEST

/* Entities are decoded, text split into several pieces is joined, and a
 * prefixed namespace is as good as the default one. */
START_TEST(test_list_text_and_namespaces)
{
    static const char doc[] =
        "<s3:ListBucketResult xmlns:s3=\"" S3_NS "\">"
        "<s3:IsTruncated>fal<!-- split -->se</s3:IsTruncated>"
        "<s3:NextContinuationToken>ignored when not truncated</s3:NextContinuationToken>"
        "<s3:Contents><s3:Key>a&amp;b&#x2F;c&lt;d&#233;\xe2\x82\xac"
        "<![CDATA[<e>&amp;]]>\nf</s3:Key><s3:Size>1</s3:Size></s3:Contents>"
        "</s3:ListBucketResult>";
    sg_s3_list_page page = {0};
    sg_error err = {0};
    ck_assert_int_eq(parse_list_str(&page, doc, &err), 0);
    ck_assert_uint_eq(page.count, 1);
    ck_assert_str_eq(page.objects[0].key, "a&b/c<d\xc3\xa9\xe2\x82\xac<e>&amp;\nf");
    ck_assert(!page.truncated);
    ck_assert_ptr_null(page.next_token);
    sg_s3_list_page_clear(&page);
}
END_TEST

/* Only ListBucketResult/Contents/Key and .../Size count; the same names
 * anywhere else, and unknown elements, are ignored. */
START_TEST(test_list_positions)
{
    static const char doc[] =
        "<ListBucketResult xmlns=\"" S3_NS "\">"
        "<Key>top-level</Key><Size>x</Size>"
        "<Extra><Contents><Key>nested</Key><Size>y</Size></Contents></Extra>"
        "<IsTruncated>true</IsTruncated>"
        "<Contents><Key>real</Key><Owner><Key>owner</Key><Size>z</Size></Owner>"
        "<Size>42</Size><Future a=\"1\"><Key>future</Key></Future></Contents>"
        "<CommonPrefixes><Prefix>p/</Prefix><Key>prefix</Key><Size>big</Size></CommonPrefixes>"
        "<Error><Code>NotAnError</Code></Error>"
        "<NextContinuationToken>t&amp;1</NextContinuationToken>"
        "</ListBucketResult>";
    sg_s3_list_page page = {0};
    sg_error err = {0};
    ck_assert_int_eq(parse_list_str(&page, doc, &err), 0);
    ck_assert_uint_eq(page.count, 1);
    ck_assert_str_eq(page.objects[0].key, "real");
    ck_assert_uint_eq(page.objects[0].size, 42);
    ck_assert(page.truncated);
    ck_assert_str_eq(page.next_token, "t&1");
    sg_s3_list_page_clear(&page);
}
END_TEST

START_TEST(test_list_key_bounds)
{
    sg_s3_list_page page = {0};
    sg_error err = {0};
    char key[SG_S3_TOKEN_MAX + 2];
    char *doc;

    memset(key, 'k', sizeof(key));
    key[SG_S3_KEY_MAX] = '\0';
    doc = list_with(key, "7");
    ck_assert_int_eq(parse_list_str(&page, doc, &err), 0);
    ck_assert_uint_eq(strlen(page.objects[0].key), SG_S3_KEY_MAX);
    sg_s3_list_page_clear(&page);
    free(doc);

    /* One byte over, and far over what the text buffer holds. */
    key[SG_S3_KEY_MAX] = 'k';
    key[SG_S3_KEY_MAX + 1] = '\0';
    doc = list_with(key, "7");
    assert_list_refused(doc, "malformed ListObjectsV2 response: key longer than 1024 bytes");
    ck_assert_int_eq(parse_list_str(&page, doc, &err), SG_E_FORMAT);
    ck_assert_str_eq(err.detail,
                     "the key starts with "
                     "\"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\"");
    free(doc);
    key[sizeof(key) - 1] = '\0';
    doc = list_with(key, "7");
    assert_list_refused(doc, "malformed ListObjectsV2 response: key longer than 1024 bytes");
    free(doc);

    doc = list_with("", "7");
    assert_list_refused(doc, "malformed ListObjectsV2 response: empty Key in Contents");
    free(doc);
}
END_TEST

START_TEST(test_list_size_refused)
{
    static const char *const sizes[] = {"",
                                        "12x",
                                        "-1",
                                        "+1",
                                        " 5",
                                        "5 ",
                                        "0x10",
                                        "1e3",
                                        "18446744073709551616",
                                        "99999999999999999999"};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        sg_s3_list_page page = {0};
        sg_error err = {0};
        char expected[200];
        char *doc = list_with("shards/s1/manifest", sizes[i]);
        snprintf(expected, sizeof(expected),
                 "malformed ListObjectsV2 response: Size \"%s\" is not an unsigned 64-bit decimal "
                 "number",
                 sizes[i]);
        assert_list_refused(doc, expected);
        ck_assert_int_eq(parse_list_str(&page, doc, &err), SG_E_FORMAT);
        ck_assert_str_eq(err.detail, "the object is \"shards/s1/manifest\"");
        free(doc);
    }
    assert_list_refused("<ListBucketResult><IsTruncated>false</IsTruncated>"
                        "<Contents><Key>k</Key></Contents></ListBucketResult>",
                        "malformed ListObjectsV2 response: no Size for key \"k\"");
    assert_list_refused("<ListBucketResult><IsTruncated>false</IsTruncated>"
                        "<Contents><Size>1</Size></Contents><Contents/></ListBucketResult>",
                        "malformed ListObjectsV2 response: Contents without a Key");
}
END_TEST

START_TEST(test_list_truncation_refused)
{
    sg_s3_list_page page = {0};
    sg_error err = {0};
    assert_list_refused("<ListBucketResult><IsTruncated>yes</IsTruncated></ListBucketResult>",
                        "malformed ListObjectsV2 response: IsTruncated \"yes\" is neither true nor "
                        "false");
    assert_list_refused(
        "<ListBucketResult><IsTruncated>True</IsTruncated></ListBucketResult>",
        "malformed ListObjectsV2 response: IsTruncated \"True\" is neither true nor "
        "false");
    assert_list_refused("<ListBucketResult><KeyCount>0</KeyCount></ListBucketResult>",
                        "malformed ListObjectsV2 response: IsTruncated is missing");
    assert_list_refused("<ListBucketResult><IsTruncated>true</IsTruncated>"
                        "<Contents><Key>k</Key><Size>1</Size></Contents></ListBucketResult>",
                        "malformed ListObjectsV2 response: IsTruncated is true but "
                        "NextContinuationToken is missing");
    assert_list_refused("<ListBucketResult><IsTruncated>true</IsTruncated>"
                        "<NextContinuationToken></NextContinuationToken></ListBucketResult>",
                        "malformed ListObjectsV2 response: IsTruncated is true but "
                        "NextContinuationToken is missing");
    ck_assert_int_eq(parse_list_str(&page,
                                    "<ListBucketResult><IsTruncated>true</IsTruncated>"
                                    "</ListBucketResult>",
                                    &err),
                     SG_E_FORMAT);
    ck_assert_str_eq(err.hint, "the next page cannot be asked for without a continuation token");
    {
        char token[SG_S3_TOKEN_MAX + 2], *doc = NULL;
        memset(token, 't', sizeof(token) - 1);
        token[sizeof(token) - 1] = '\0';
        ck_assert_int_ge(asprintf(&doc,
                                  "<ListBucketResult><IsTruncated>true</IsTruncated>"
                                  "<NextContinuationToken>%s</NextContinuationToken>"
                                  "</ListBucketResult>",
                                  token),
                         0);
        assert_list_refused(doc, "malformed ListObjectsV2 response: NextContinuationToken longer "
                                 "than 4096 bytes");
        free(doc);
    }
}
END_TEST

START_TEST(test_list_wrong_root)
{
    sg_s3_list_page page = {0};
    sg_error err = {0};
    assert_list_refused(initiate, "malformed ListObjectsV2 response: root element is "
                                  "<InitiateMultipartUploadResult>, expected <ListBucketResult>");
    assert_list_refused(nginx_502, "malformed ListObjectsV2 response: root element is <html>, "
                                   "expected <ListBucketResult>");
    /* An error document where a listing was expected: the server said no. */
    ck_assert_int_eq(parse_list_str(&page, minio_error, &err), SG_E_STORE);
    ck_assert_str_eq(err.message, "ListObjectsV2 failed: NoSuchBucket (The specified bucket does "
                                  "not exist)");
    ck_assert_str_eq(err.detail, "request id 17A2B3C4D5E6F789");
    ck_assert_int_eq(parse_list_str(&page, "<Error><Code>SlowDown</Code></Error>", &err),
                     SG_E_STORE);
    ck_assert_str_eq(err.message, "ListObjectsV2 failed: SlowDown");
    ck_assert_str_eq(err.detail, "");
    ck_assert_ptr_null(page.objects);
    assert_list_refused("<Error><Message>m</Message></Error>",
                        "malformed ListObjectsV2 response: <Error> without a Code");
}
END_TEST

/* Not XML, cut short, or with a DTD: expat's error and where it happened. */
START_TEST(test_list_malformed_xml)
{
    /* Cut inside the second key, on line 18. */
    char *cut = strndup(list_page, (size_t)(strstr(list_page, "0.pack") - list_page));
    assert_list_refused("", "empty ListObjectsV2 response");
    assert_list_refused(" \n\t", "empty ListObjectsV2 response");
    assert_list_refused("Service Unavailable", "malformed ListObjectsV2 response: syntax error at "
                                               "line 1, column 1");
    assert_list_refused("<ListBucketResult>\n<IsTruncated>false</Truncated>\n</ListBucketResult>",
                        "malformed ListObjectsV2 response: mismatched tag at line 2, column 21");
    assert_list_refused(cut, "malformed ListObjectsV2 response: no element found at line 18, "
                             "column 42");
    assert_list_refused("<ListBucketResult><IsTruncated>false</IsTruncated>",
                        "malformed ListObjectsV2 response: no element found at line 1, column 51");
    assert_list_refused("<ListBucketResult><Key>&nope;</Key></ListBucketResult>",
                        "malformed ListObjectsV2 response: undefined entity at line 1, column 24");
    assert_list_refused("<x:ListBucketResult><IsTruncated>false</IsTruncated></x:ListBucketResult>",
                        "malformed ListObjectsV2 response: unbound prefix at line 1, column 1");
    /* A billion laughs never gets to expand: the DTD is refused first. */
    assert_list_refused("<?xml version=\"1.0\"?>\n"
                        "<!DOCTYPE lolz [<!ENTITY lol \"lol\">"
                        "<!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">]>\n"
                        "<ListBucketResult><IsTruncated>false</IsTruncated>"
                        "<Contents><Key>&lol2;</Key><Size>1</Size></Contents></ListBucketResult>",
                        "malformed ListObjectsV2 response: document type declarations are not "
                        "accepted");
    assert_list_refused("<!DOCTYPE ListBucketResult SYSTEM \"file:///etc/passwd\">"
                        "<ListBucketResult/>",
                        "malformed ListObjectsV2 response: document type declarations are not "
                        "accepted");
    free(cut);
}
END_TEST

START_TEST(test_upload_id)
{
    char *id = (char *)"stale";
    sg_error err = {0};
    char long_id[SG_S3_TOKEN_MAX + 2], *doc = NULL;
    ck_assert_int_eq(sg_s3_xml_parse_upload_id(&id, initiate, strlen(initiate), &err), 0);
    ck_assert_str_eq(id, "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA");
    free(id);

    ck_assert_int_eq(sg_s3_xml_parse_upload_id(&id, aws_error, strlen(aws_error), &err),
                     SG_E_STORE);
    ck_assert_ptr_null(id);
    ck_assert_str_eq(err.message, "CreateMultipartUpload failed: NoSuchKey (The resource you "
                                  "requested does not exist)");
    ck_assert_str_eq(err.detail, "request id 4442587FB7D0A2F9");

    ck_assert_int_eq(sg_s3_xml_parse_upload_id(&id, complete_ok, strlen(complete_ok), &err),
                     SG_E_FORMAT);
    ck_assert_str_eq(err.message, "malformed CreateMultipartUpload response: root element is "
                                  "<CompleteMultipartUploadResult>, expected "
                                  "<InitiateMultipartUploadResult>");
    ck_assert_ptr_null(id);

    {
        const char missing[] = "<InitiateMultipartUploadResult><Key>k</Key>"
                               "<Other><UploadId>nested</UploadId></Other>"
                               "</InitiateMultipartUploadResult>";
        const char empty[] = "<InitiateMultipartUploadResult><UploadId/>"
                             "</InitiateMultipartUploadResult>";
        ck_assert_int_eq(sg_s3_xml_parse_upload_id(&id, missing, strlen(missing), &err),
                         SG_E_FORMAT);
        ck_assert_str_eq(err.message, "malformed CreateMultipartUpload response: UploadId is "
                                      "missing");
        ck_assert_int_eq(sg_s3_xml_parse_upload_id(&id, empty, strlen(empty), &err), SG_E_FORMAT);
        ck_assert_str_eq(err.message, "malformed CreateMultipartUpload response: UploadId is "
                                      "missing");
        ck_assert_ptr_null(id);
    }

    memset(long_id, 'u', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    ck_assert_int_ge(asprintf(&doc,
                              "<InitiateMultipartUploadResult><UploadId>%s</UploadId>"
                              "</InitiateMultipartUploadResult>",
                              long_id),
                     0);
    ck_assert_int_eq(sg_s3_xml_parse_upload_id(&id, doc, strlen(doc), &err), SG_E_FORMAT);
    ck_assert_str_eq(err.message, "malformed CreateMultipartUpload response: UploadId longer than "
                                  "4096 bytes");
    ck_assert_ptr_null(id);
    free(doc);

    ck_assert_int_eq(sg_s3_xml_parse_upload_id(&id, "<Init", 5, &err), SG_E_FORMAT);
    ck_assert_str_eq(err.message, "malformed CreateMultipartUpload response: unclosed token at "
                                  "line 1, column 1");
}
END_TEST

START_TEST(test_complete_answer)
{
    sg_s3_error_doc doc;
    sg_error err = {0};
    memset(&doc, 'x', sizeof(doc));
    ck_assert_int_eq(sg_s3_xml_parse_complete(&doc, complete_ok, strlen(complete_ok), &err), 0);
    ck_assert_str_eq(doc.code, "");
    ck_assert_int_eq(sg_s3_xml_parse_complete(NULL, complete_ok, strlen(complete_ok), &err), 0);
    {
        const char compact[] = "<CompleteMultipartUploadResult xmlns=\"" S3_NS "\"><Location>l"
                               "</Location><ETag>&quot;e-2&quot;</ETag>"
                               "</CompleteMultipartUploadResult>";
        ck_assert_int_eq(sg_s3_xml_parse_complete(&doc, compact, strlen(compact), &err), 0);
    }
}
END_TEST

/* S3 answers 200 and then an error when assembly fails late. */
START_TEST(test_complete_error_in_200)
{
    sg_s3_error_doc doc;
    sg_error err = {0};
    ck_assert_int_eq(sg_s3_xml_parse_complete(&doc, complete_error, strlen(complete_error), &err),
                     SG_E_STORE);
    ck_assert_str_eq(err.message, "CompleteMultipartUpload failed: InternalError (We encountered "
                                  "an internal error. Please try again.)");
    ck_assert_str_eq(err.detail, "request id 656c76696e6727732072657175657374");
    ck_assert_str_eq(doc.code, "InternalError");
    ck_assert_str_eq(doc.message, "We encountered an internal error. Please try again.");
    ck_assert_str_eq(doc.request_id, "656c76696e6727732072657175657374");
    sg_error_clear(&err);
    ck_assert_int_eq(sg_s3_xml_parse_complete(NULL, complete_error, strlen(complete_error), &err),
                     SG_E_STORE);
    ck_assert_str_eq(err.message, "CompleteMultipartUpload failed: InternalError (We encountered "
                                  "an internal error. Please try again.)");
}
END_TEST

START_TEST(test_complete_refused)
{
    sg_s3_error_doc doc;
    sg_error err = {0};
    const char half[] = "<CompleteMultipartUploadResult><Location>l</Loc";
    ck_assert_int_eq(sg_s3_xml_parse_complete(&doc, list_page, strlen(list_page), &err),
                     SG_E_FORMAT);
    ck_assert_str_eq(err.message, "malformed CompleteMultipartUpload response: root element is "
                                  "<ListBucketResult>, expected <CompleteMultipartUploadResult>");
    ck_assert_int_eq(sg_s3_xml_parse_complete(&doc, half, strlen(half), &err), SG_E_FORMAT);
    ck_assert_str_eq(err.message, "malformed CompleteMultipartUpload response: unclosed token at "
                                  "line 1, column 43");
    ck_assert_int_eq(sg_s3_xml_parse_complete(&doc, "  \n  ", 5, &err), SG_E_FORMAT);
    ck_assert_str_eq(err.message, "empty CompleteMultipartUpload response");
    ck_assert_str_eq(doc.code, "");
}
END_TEST

/* The built body, read back by expat: "path=text" for each leaf. */
typedef struct readback {
    char root[128];
    char path[256];
    char text[256];
    char out[4096];
} readback;

static void XMLCALL rb_start(void *data, const XML_Char *name, const XML_Char **attrs)
{
    readback *rb = data;
    const char *local = strchr(name, '|') ? strchr(name, '|') + 1 : name;
    (void)attrs;
    if (!rb->root[0])
        snprintf(rb->root, sizeof(rb->root), "%s", name);
    else
        snprintf(rb->path + strlen(rb->path), sizeof(rb->path) - strlen(rb->path), "%s%s",
                 rb->path[0] ? "/" : "", local);
    rb->text[0] = '\0';
}

static void XMLCALL rb_end(void *data, const XML_Char *name)
{
    readback *rb = data;
    char *slash = strrchr(rb->path, '/');
    (void)name;
    if (rb->text[0])
        snprintf(rb->out + strlen(rb->out), sizeof(rb->out) - strlen(rb->out), "%s=%s\n", rb->path,
                 rb->text);
    rb->text[0] = '\0';
    if (slash)
        *slash = '\0';
    else
        rb->path[0] = '\0';
}

static void XMLCALL rb_text(void *data, const XML_Char *s, int len)
{
    readback *rb = data;
    snprintf(rb->text + strlen(rb->text), sizeof(rb->text) - strlen(rb->text), "%.*s", len, s);
}

static void read_back(readback *rb, const sg_buf *body)
{
    XML_Parser parser = XML_ParserCreateNS(NULL, '|');
    memset(rb, 0, sizeof(*rb));
    XML_SetUserData(parser, rb);
    XML_SetElementHandler(parser, rb_start, rb_end);
    XML_SetCharacterDataHandler(parser, rb_text);
    ck_assert_msg(XML_Parse(parser, (const char *)body->data, (int)body->len, 1) == XML_STATUS_OK,
                  "built body is not XML: %s", XML_ErrorString(XML_GetErrorCode(parser)));
    XML_ParserFree(parser);
}

START_TEST(test_complete_body)
{
    const sg_s3_part_ref parts[] = {
        {1, "\"a54357aff0632cce46d942af68356b38\"", "Z3BYlDL0Kz8dGA8pRv3h0eqXb0GGVGNrSyxL5VWGYQE="},
        {2, "\"0c78aef83f66abc1fa1e8477f296d394\"", NULL},
        {7, "\"acbd18db4cc2f85cedef654fccc4a4d8-3\"",
         "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="},
    };
    sg_buf body = {0};
    sg_error err = {0};
    readback rb;
    ck_assert_int_eq(sg_buf_append(&body, "kept", 4, &err), 0);
    ck_assert_int_eq(sg_s3_xml_complete_body(&body, parts, 3, &err), 0);
    ck_assert_mem_eq(body.data, "kept", 4);
    memmove(body.data, body.data + 4, body.len - 4);
    body.len -= 4;
    read_back(&rb, &body);
    ck_assert_str_eq(rb.root, S3_NS "|CompleteMultipartUpload");
    ck_assert_str_eq(rb.out, "Part/PartNumber=1\n"
                             "Part/ETag=\"a54357aff0632cce46d942af68356b38\"\n"
                             "Part/ChecksumSHA256=Z3BYlDL0Kz8dGA8pRv3h0eqXb0GGVGNrSyxL5VWGYQE=\n"
                             "Part/PartNumber=2\n"
                             "Part/ETag=\"0c78aef83f66abc1fa1e8477f296d394\"\n"
                             "Part/PartNumber=7\n"
                             "Part/ETag=\"acbd18db4cc2f85cedef654fccc4a4d8-3\"\n"
                             "Part/ChecksumSHA256=n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=\n");
    sg_buf_free(&body);
}
END_TEST

/* The exact bytes: quotes and the other reserved characters as entities. */
START_TEST(test_complete_body_escaping)
{
    const sg_s3_part_ref parts[] = {{1, "\"e<1>&'\"", "a+b/c="}};
    sg_buf body = {0};
    sg_error err = {0};
    readback rb;
    ck_assert_int_eq(sg_s3_xml_complete_body(&body, parts, 1, &err), 0);
    ck_assert_int_eq(sg_buf_terminate(&body, &err), 0);
    ck_assert_str_eq((char *)body.data,
                     "<CompleteMultipartUpload xmlns=\"" S3_NS "\"><Part><PartNumber>1</PartNumber>"
                     "<ETag>&quot;e&lt;1&gt;&amp;&apos;&quot;</ETag>"
                     "<ChecksumSHA256>a+b/c=</ChecksumSHA256></Part></CompleteMultipartUpload>");
    read_back(&rb, &body);
    ck_assert_str_eq(rb.out,
                     "Part/PartNumber=1\nPart/ETag=\"e<1>&'\"\nPart/ChecksumSHA256=a+b/c=\n");
    sg_buf_free(&body);
}
END_TEST

/* Each refusal leaves the buffer as it was. */
START_TEST(test_complete_body_refused)
{
    static const struct {
        sg_s3_part_ref parts[2];
        size_t count;
        int code;
        const char *message;
    } cases[] = {
        {{{1, "\"e\"", NULL}}, 0, SG_E_INTERNAL, "CompleteMultipartUpload needs at least one part"},
        {{{0, "\"e\"", NULL}},
         1,
         SG_E_INTERNAL,
         "CompleteMultipartUpload part number 0 is outside 1 to 10000"},
        {{{10001, "\"e\"", NULL}},
         1,
         SG_E_INTERNAL,
         "CompleteMultipartUpload part number 10001 is outside 1 to 10000"},
        {{{2, "\"e\"", NULL}, {1, "\"e\"", NULL}},
         2,
         SG_E_INTERNAL,
         "CompleteMultipartUpload part 1 comes after part 2: parts must be in ascending order"},
        {{{1, "\"e\"", NULL}, {1, "\"e\"", NULL}},
         2,
         SG_E_INTERNAL,
         "CompleteMultipartUpload part 1 comes after part 1: parts must be in ascending order"},
        {{{1, "\"e\"", NULL}, {2, NULL, NULL}},
         2,
         SG_E_INTERNAL,
         "CompleteMultipartUpload part 2 has no ETag"},
        {{{3, "", NULL}}, 1, SG_E_INTERNAL, "CompleteMultipartUpload part 3 has no ETag"},
        {{{1, "\"e\"", NULL}, {4, "\"e\r\n\"", NULL}},
         2,
         SG_E_FORMAT,
         "ETag of part 4 contains control character 0x0d"},
        {{{5, "\"e\"", "abc\x01"}},
         1,
         SG_E_FORMAT,
         "ChecksumSHA256 of part 5 contains control "
         "character 0x01"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sg_buf body = {0};
        sg_error err = {0};
        ck_assert_int_eq(sg_buf_append(&body, "kept", 4, &err), 0);
        ck_assert_int_eq(sg_s3_xml_complete_body(&body, cases[i].parts, cases[i].count, &err),
                         cases[i].code);
        ck_assert_str_eq(err.message, cases[i].message);
        ck_assert_uint_eq(body.len, 4);
        ck_assert_mem_eq(body.data, "kept", 4);
        sg_buf_free(&body);
    }
}
END_TEST

/* Every allocation, expat's included, fails in turn: SG_E_NOMEM, a message
 * saying so, nothing half-filled, nothing leaked (ASan checks). */
typedef int (*attempt_fn)(sg_error *err);

static int attempt_list(sg_error *err)
{
    sg_s3_list_page page = {0};
    int rc = parse_list_str(&page, list_page, err);
    if (rc < 0) {
        ck_assert_ptr_null(page.objects);
        ck_assert_ptr_null(page.next_token);
        return rc;
    }
    ck_assert_uint_eq(page.count, 3);
    ck_assert_str_eq(page.objects[2].key, "shards/s1/snapshots/a/packs/1.pack");
    sg_s3_list_page_clear(&page);
    return 0;
}

static int attempt_upload_id(sg_error *err)
{
    char *id = NULL;
    int rc = sg_s3_xml_parse_upload_id(&id, initiate, strlen(initiate), err);
    if (rc < 0) {
        ck_assert_ptr_null(id);
        return rc;
    }
    free(id);
    return 0;
}

static int attempt_complete(sg_error *err)
{
    sg_s3_error_doc doc;
    int rc = sg_s3_xml_parse_complete(&doc, complete_error, strlen(complete_error), err);
    if (rc == SG_E_STORE) {
        ck_assert_str_eq(doc.code, "InternalError");
        return 0;
    }
    ck_assert_str_eq(doc.code, "");
    return rc;
}

static int attempt_error(sg_error *err)
{
    sg_s3_error_doc doc;
    int rc = sg_s3_xml_parse_error(&doc, minio_error, strlen(minio_error));
    (void)err; /* no sg_error: only the code says what went wrong */
    ck_assert_str_eq(doc.code, rc < 0 ? "" : "NoSuchBucket");
    return rc;
}

static int attempt_body(sg_error *err)
{
    const sg_s3_part_ref parts[] = {{1, "\"e1\"", "c1"}, {2, "\"e2\"", NULL}};
    sg_buf body = {0};
    int rc = sg_s3_xml_complete_body(&body, parts, 2, err);
    if (rc < 0)
        ck_assert_uint_eq(body.len, 0);
    sg_buf_free(&body);
    return rc;
}

START_TEST(test_nomem)
{
    static const struct {
        attempt_fn fn;
        bool has_message;
    } attempts[] = {{attempt_list, true},
                    {attempt_upload_id, true},
                    {attempt_complete, true},
                    {attempt_error, false},
                    {attempt_body, true}};
    for (size_t a = 0; a < sizeof(attempts) / sizeof(attempts[0]); a++) {
        long n;
        for (n = 0; n < 1000; n++) {
            sg_error err = {0};
            int rc;
            sg_mem_fail_after(n);
            rc = attempts[a].fn(&err);
            sg_mem_fail_reset();
            if (rc == 0)
                break;
            ck_assert_msg(rc == SG_E_NOMEM, "attempt %zu, %ld allocations: %d %s", a, n, rc,
                          err.message);
            if (attempts[a].has_message)
                ck_assert_msg(strncmp(err.message, "out of memory", 13) == 0, "attempt %zu: %s", a,
                              err.message);
        }
        ck_assert_msg(n > 0 && n < 1000, "attempt %zu: %ld allocations", a, n);
    }
}
END_TEST

static Suite *s3_xml_suite(void)
{
    Suite *s = suite_create("s3_xml");
    TCase *tc;
#define CASE(name, fn)                                                                             \
    tc = tcase_create(name);                                                                       \
    tcase_add_test(tc, fn);                                                                        \
    suite_add_tcase(s, tc)
    CASE("error documents", test_error_documents);
    CASE("error long values", test_error_long_values);
    CASE("error refusals", test_error_refusals);
    CASE("list page", test_list_page);
    CASE("list empty", test_list_empty);
    CASE("list text and namespaces", test_list_text_and_namespaces);
    CASE("list positions", test_list_positions);
    CASE("list key bounds", test_list_key_bounds);
    CASE("list size refused", test_list_size_refused);
    CASE("list truncation refused", test_list_truncation_refused);
    CASE("list wrong root", test_list_wrong_root);
    CASE("list malformed xml", test_list_malformed_xml);
    CASE("upload id", test_upload_id);
    CASE("complete answer", test_complete_answer);
    CASE("complete error in 200", test_complete_error_in_200);
    CASE("complete refused", test_complete_refused);
    CASE("complete body", test_complete_body);
    CASE("complete body escaping", test_complete_body_escaping);
    CASE("complete body refused", test_complete_body_refused);
    CASE("nomem", test_nomem);
#undef CASE
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(s3_xml_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
