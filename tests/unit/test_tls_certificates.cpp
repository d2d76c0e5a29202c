// The run CA and its leaves (subject, SAN, validity, key usage), a full
// handshake between a minted leaf and a verifying client through memory
// BIOs, and the TLS mode chosen from rules (plan_tls, decide_tls).

#include <doctest/doctest.h>

#include <openssl/x509v3.h>

#include <ctime>
#include <map>

#include "policy/policy.hpp"
#include "proxy/resolver.hpp"
#include "proxy/tls_gate.hpp"
#include "tls/certificate_authority.hpp"
#include "tls/tls_stream.hpp"

using namespace pinfold;

namespace {

std::string san_of(X509* cert)
{
    std::string out;
    auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names); ++i) {
        GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
        if (n->type == GEN_DNS)
            out += "DNS:" + std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(n->d.dNSName)));
        else if (n->type == GEN_IPADD)
            out += "IP:" + std::to_string(ASN1_STRING_length(n->d.iPAddress)) + "bytes";
    }
    GENERAL_NAMES_free(names);
    return out;
}

bool verifies(const tls::CertificateAuthority& ca, X509* leaf, const char* host)
{
    X509_STORE* store = X509_STORE_new();
    X509_STORE_add_cert(store, ca.certificate());
    X509_STORE_CTX* ctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(ctx, store, leaf, nullptr);
    X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER);
    X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_X509_STRICT);
    if (host)
        X509_VERIFY_PARAM_set1_host(param, host, 0);
    bool ok = X509_verify_cert(ctx) == 1;
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return ok;
}

// Moves bytes between the two sessions until neither has anything to say.
void shuttle(tls::TlsStream& client, tls::TlsStream& server, std::string& c_in, std::string& c_out,
             std::string& s_in, std::string& s_out, bool& client_ok, bool& server_ok)
{
    client_ok = server_ok = true;
    for (int i = 0; i < 20; ++i) {
        std::string to_server, to_client;
        client_ok = client_ok && client.pump(c_in, c_out, to_server).has_value();
        server.feed(to_server);
        server_ok = server_ok && server.pump(s_in, s_out, to_client).has_value();
        client.feed(to_client);
        if (to_server.empty() && to_client.empty())
            break;
    }
}

} // namespace

TEST_CASE("run CA: a CA that can only sign leaves, fresh per run")
{
    auto ca = tls::CertificateAuthority::create();
    REQUIRE(ca);
    CHECK(ca->certificate_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    CHECK(ca->certificate_pem().find("PRIVATE") == std::string::npos);
    X509* cert = ca->certificate();
    CHECK(X509_check_ca(cert) == 1);
    CHECK(X509_get_pathlen(cert) == 0);
    CHECK((X509_get_key_usage(cert) & (KU_KEY_CERT_SIGN | KU_CRL_SIGN)) == (KU_KEY_CERT_SIGN | KU_CRL_SIGN));
    auto other = tls::CertificateAuthority::create();
    REQUIRE(other);
    CHECK(other->certificate_pem() != ca->certificate_pem());
}

TEST_CASE("leaf: subject, SAN, validity, key usage; verifies for its name only")
{
    auto ca = tls::CertificateAuthority::create();
    REQUIRE(ca);
    auto leaf = ca->mint_leaf("api.github.com");
    REQUIRE(leaf);
    X509* cert = leaf->get();
    char cn[256] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
    CHECK(std::string(cn) == "api.github.com");
    CHECK(san_of(cert) == "DNS:api.github.com");
    CHECK(X509_check_ca(cert) == 0);
    CHECK((X509_get_key_usage(cert) & KU_DIGITAL_SIGNATURE) != 0);
    CHECK((X509_get_key_usage(cert) & KU_KEY_CERT_SIGN) == 0);
    CHECK((X509_get_extended_key_usage(cert) & XKU_SSL_SERVER) != 0);
    std::time_t now = std::time(nullptr);
    CHECK(X509_cmp_time(X509_get0_notBefore(cert), &now) < 0);
    CHECK(X509_cmp_time(X509_get0_notAfter(cert), &now) > 0);
    CHECK(verifies(*ca, cert, "api.github.com"));
    CHECK_FALSE(verifies(*ca, cert, "evil.example"));
    auto other = tls::CertificateAuthority::create();
    REQUIRE(other);
    CHECK_FALSE(verifies(*other, cert, "api.github.com"));

    auto ip = ca->mint_leaf("10.0.0.5");
    REQUIRE(ip);
    CHECK(san_of(ip->get()) == "IP:4bytes");
    CHECK(verifies(*ca, ip->get(), nullptr));
}

TEST_CASE("handshake: minted leaf, verifying client, ALPN http/1.1, data both ways")
{
    auto ca = tls::CertificateAuthority::create();
    REQUIRE(ca);
    tls::LeafContexts leaves(*ca, 2);
    auto server_ctx = leaves.context_for("svc.example");
    REQUIRE(server_ctx);
    auto again = leaves.context_for("svc.example");
    REQUIRE(again);
    CHECK(*again == *server_ctx);   // cached
    auto client_ctx = tls::make_upstream_context(ca->certificate_pem());
    REQUIRE(client_ctx);

    auto server = tls::TlsStream::accept(*server_ctx);
    auto client = tls::TlsStream::connect(client_ctx->get(), "svc.example");
    REQUIRE(server);
    REQUIRE(client);
    std::string c_in, c_out = "GET / HTTP/1.1\r\n\r\n", s_in, s_out;
    bool client_ok = false, server_ok = false;
    shuttle(**client, **server, c_in, c_out, s_in, s_out, client_ok, server_ok);
    CHECK(client_ok);
    CHECK(server_ok);
    CHECK((*client)->established());
    CHECK(s_in == "GET / HTTP/1.1\r\n\r\n");
    s_out = "HTTP/1.1 200 OK\r\n\r\n";
    shuttle(**client, **server, c_in, c_out, s_in, s_out, client_ok, server_ok);
    CHECK(c_in == "HTTP/1.1 200 OK\r\n\r\n");

    // The same leaf presented for another name fails the client's check.
    auto wrong = tls::TlsStream::connect(client_ctx->get(), "other.example");
    auto server2 = tls::TlsStream::accept(*server_ctx);
    REQUIRE(wrong);
    REQUIRE(server2);
    std::string a, b, c, d;
    shuttle(**wrong, **server2, a, b, c, d, client_ok, server_ok);
    CHECK_FALSE(client_ok);
    CHECK((*wrong)->verification_failed());

    // The cache is bounded: older contexts are dropped, new ones still work.
    REQUIRE(leaves.context_for("b.example"));
    REQUIRE(leaves.context_for("c.example"));
    CHECK(leaves.size() == 2);
}

namespace {

policy::Policy parse(const char* yaml)
{
    auto p = policy::parse_policy(yaml, "t.yaml");
    REQUIRE_MESSAGE(p, (p ? "" : p.error().what()));
    return *p;
}

class FakeResolver final : public proxy::Resolver {
public:
    std::map<std::string, std::vector<MappedAddress>> names;
    Result<std::vector<MappedAddress>> resolve(const std::string& name) noexcept override
    {
        if (auto it = names.find(name); it != names.end())
            return it->second;
        return fail("cannot resolve " + name);
    }
};

} // namespace

TEST_CASE("mode selection: pass-through only when nothing inside TLS matters")
{
    auto p = parse(R"(name: t
rules:
  - endpoint: https://api.example.com/repos/*
    methods: [GET]
  - endpoint: https://api.example.com/**
  - endpoint: https://files.example.com/private/**
    action: deny
  - endpoint: https://files.example.com/**
  - endpoint: https://*.cdn.example.com/**
  - endpoint: https://pinned.example.com/**
    tls: intercept
  - endpoint: https://only-get.example.com/**
    methods: [GET]
  - endpoint: https://alt.example.com:8443/**
  - endpoint: https://gh-only.example.com/**
    binaries: [gh]
)");
    auto plan = [&](const char* host, std::uint16_t port = 443) { return policy::plan_tls(p, host, port); };
    CHECK_FALSE(plan("api.example.com").intercept);          // narrow allow, then full allow
    CHECK(plan("api.example.com").rule_index == 1);
    CHECK(plan("files.example.com").intercept);              // a deny comes first
    CHECK_FALSE(plan("a.cdn.example.com").intercept);        // wildcard
    CHECK(plan("cdn.example.com").intercept);                // the apex is not covered
    CHECK(plan("pinned.example.com").intercept);
    CHECK(plan("only-get.example.com").intercept);
    CHECK(plan("unknown.example.com").intercept);
    CHECK(plan("unknown.example.com").rule_index == -1);
    CHECK_FALSE(plan("alt.example.com", 8443).intercept);
    CHECK(plan("alt.example.com", 443).intercept);           // port matters
    CHECK(plan("gh-only.example.com").intercept);            // binaries are checked per request

    std::string text = policy::describe_tls(p);
    CHECK(text.find("tls api.example.com:443: passthrough") != std::string::npos);
    CHECK(text.find("tls files.example.com:443: intercept") != std::string::npos);
    CHECK(text.find("tls *.cdn.example.com:443: passthrough") != std::string::npos);

    auto bad = policy::parse_policy("name: t\nrules:\n  - endpoint: https://h.example/a/*\n    tls: passthrough\n",
                                    "t.yaml");
    REQUIRE_FALSE(bad);
    CHECK(bad.error().message.find("t.yaml:4:10: field 'rules[0].tls': passthrough needs") == 0);
    auto http = policy::parse_policy("name: t\nrules:\n  - endpoint: http://h.example/**\n    tls: intercept\n",
                                     "t.yaml");
    REQUIRE_FALSE(http);
    CHECK(http.error().message.find("applies only to https://") != std::string::npos);
    auto overridden = parse(R"(name: t
rules:
  - endpoint: https://h.example/x
    action: deny
  - endpoint: https://h.example/**
    tls: passthrough
)");
    REQUIRE(overridden.warnings.size() == 1);
    CHECK(overridden.warnings[0].find("are intercepted") != std::string::npos);
}

TEST_CASE("decide_tls: SNI, ECH, IP literals, no SNI, consistency with the dialled address")
{
    auto compiled = policy::CompiledPolicy::compile(parse(R"(name: t
rules:
  - endpoint: https://api.example.com/repos/*
  - endpoint: https://files.example.com/**
  - endpoint: https://10.0.0.5/**
)"));
    REQUIRE(compiled);
    FakeResolver resolver;
    resolver.names["api.example.com"] = {*proxy::parse_address("192.0.2.10")};
    resolver.names["files.example.com"] = {*proxy::parse_address("192.0.2.20")};
    auto origin = [](const char* addr) {
        proxy::ConnectionOrigin o;
        o.address = *proxy::parse_address(addr);
        o.port = 443;
        return o;
    };
    auto hello = [](std::optional<std::string> sni, bool ech = false) {
        tls::ClientHello h;
        h.server_name = std::move(sni);
        h.encrypted_client_hello = ech;
        return h;
    };
    using proxy::TlsAction;
    auto v = proxy::decide_tls(&*compiled, resolver, origin("192.0.2.10"), hello("api.example.com"));
    CHECK(v.action == TlsAction::intercept);
    CHECK(v.identity == "api.example.com");
    CHECK(proxy::decide_tls(&*compiled, resolver, origin("192.0.2.20"), hello("files.example.com")).action ==
          TlsAction::passthrough);
    // SNI of B while dialling A.
    v = proxy::decide_tls(&*compiled, resolver, origin("192.0.2.10"), hello("files.example.com"));
    CHECK(v.action == TlsAction::deny);
    CHECK(v.reason.find("not an address of files.example.com") != std::string::npos);
    CHECK(proxy::decide_tls(&*compiled, resolver, origin("192.0.2.10"), hello("api.example.com", true)).action ==
          TlsAction::deny);
    CHECK(proxy::decide_tls(&*compiled, resolver, origin("192.0.2.10"), hello("192.0.2.10")).action ==
          TlsAction::deny);
    CHECK(proxy::decide_tls(&*compiled, resolver, origin("192.0.2.10"), hello(std::nullopt)).action ==
          TlsAction::deny);
    v = proxy::decide_tls(&*compiled, resolver, origin("10.0.0.5"), hello(std::nullopt));
    CHECK(v.action == TlsAction::passthrough);
    CHECK(v.identity == "10.0.0.5");
    CHECK(proxy::decide_tls(nullptr, resolver, origin("192.0.2.10"), hello("api.example.com")).action ==
          TlsAction::deny);
}
