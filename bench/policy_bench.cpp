// Cost of one policy decision as the rule count grows. The policy is built
// through parse_policy from generated YAML, exactly as `pinfold run` loads
// one, so the figure includes nothing the proxy does not do.
//
//   spread:   N rules over N/2 hosts (two rules per host): the common shape,
//             where the per-host index must keep the cost flat.
//   one_host: N rules on a single host: the worst case for a host index
//             (every rule is a candidate); reported, not a target.

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "policy/policy.hpp"

namespace {

using pinfold::policy::CompiledPolicy;
using pinfold::policy::Request;

std::string host_name(long i)
{
    return "svc" + std::to_string(i) + ".example.com";
}

CompiledPolicy build(long rules, bool one_host)
{
    std::string yaml = "name: bench\nrules:\n";
    for (long i = 0; i < rules; ++i) {
        long h = one_host ? 0 : i / 2;
        // Alternate an exact-prefix glob and a ** glob so matching walks
        // both kinds of segment.
        std::string path = i % 2 == 0 ? "/repos/*/*/issues/" + std::to_string(i) : "/v" + std::to_string(i) + "/**";
        yaml += "  - name: r" + std::to_string(i) + "\n";
        yaml += "    endpoint: https://" + host_name(h) + path + "\n";
        yaml += "    methods: [GET, POST]\n";
    }
    auto policy = pinfold::policy::parse_policy(yaml, "bench.yaml");
    if (!policy) {
        std::fprintf(stderr, "policy_bench: %s\n", policy.error().what().c_str());
        std::exit(1);
    }
    auto compiled = CompiledPolicy::compile(std::move(*policy));
    if (!compiled) {
        std::fprintf(stderr, "policy_bench: %s\n", compiled.error().what().c_str());
        std::exit(1);
    }
    return std::move(*compiled);
}

// The request matches the last rule of the chosen host, so a scan within a
// host pays for every rule before it.
void decide(benchmark::State& state, bool one_host, bool allowed)
{
    long rules = state.range(0);
    CompiledPolicy policy = build(rules, one_host);
    long last = rules - 1;
    std::string host = host_name(one_host ? 0 : last / 2);
    std::string path = allowed ? (last % 2 == 0 ? "/repos/octo/demo/issues/" + std::to_string(last)
                                                 : "/v" + std::to_string(last) + "/a/b/c")
                               : "/not/a/rule";
    Request request{"https", host, 443, "GET", path};
    for (auto _ : state) {
        auto d = policy.decide(request);
        benchmark::DoNotOptimize(d);
        if (d.allowed != allowed)
            state.SkipWithError("unexpected decision");
    }
}

void spread_allow(benchmark::State& s) { decide(s, false, true); }
void spread_deny(benchmark::State& s) { decide(s, false, false); }
void one_host_allow(benchmark::State& s) { decide(s, true, true); }

} // namespace

BENCHMARK(spread_allow)->Arg(10)->Arg(1000)->Arg(10000);
BENCHMARK(spread_deny)->Arg(10)->Arg(1000)->Arg(10000);
BENCHMARK(one_host_allow)->Arg(10)->Arg(1000)->Arg(10000);

BENCHMARK_MAIN();
