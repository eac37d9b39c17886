/* `inferbooster hw`: the host's CPU (ISA features, caches, usable cores) and NVIDIA
 * GPUs, as a table or one JSON object. */
#include <string.h>

#include "cli/cli.h"
#include "target/target.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: inferbooster hw [--json]\n"
            "\n"
            "Shows the CPU (vendor, model, online and usable CPUs, caches, ISA features the\n"
            "OS enables) and NVIDIA GPUs (through the installed driver, if any).\n"
            "\n"
            "  --json   print one JSON object instead of a table\n");
}

static void print_bytes(char *buf, size_t cap, int64_t bytes) {
    if (bytes <= 0) snprintf(buf, cap, "?");
    else if (bytes >= ((int64_t)1 << 30) && bytes % ((int64_t)1 << 30) == 0)
        snprintf(buf, cap, "%lld GiB", (long long)(bytes >> 30));
    else if (bytes >= ((int64_t)1 << 20))
        snprintf(buf, cap, "%.4g MiB", (double)bytes / (1 << 20));
    else if (bytes >= 1024)
        snprintf(buf, cap, "%.4g KiB", (double)bytes / 1024);
    else
        snprintf(buf, cap, "%lld B", (long long)bytes);
}

static void print_table(const ib__cpu_info *cpu, const ib__gpu_info *gpu) {
    char a[32], b[32], c[32];
    printf("CPU\n");
    printf("  architecture  %s\n", cpu->arch[0] ? cpu->arch : "?");
    printf("  vendor        %s\n", cpu->vendor[0] ? cpu->vendor : "?");
    printf("  model         %s\n", cpu->model_name[0] ? cpu->model_name : "?");
    printf("  CPUs          %d online, %d usable by this process\n", cpu->logical_cpus,
           cpu->usable_cpus);
    print_bytes(a, sizeof a, cpu->l1d_bytes);
    print_bytes(b, sizeof b, cpu->l2_bytes);
    print_bytes(c, sizeof c, cpu->l3_bytes);
    printf("  caches        L1d %s, L2 %s, L3 %s", a, b, c);
    if (cpu->cache_line_bytes > 0) printf(", line %d B", cpu->cache_line_bytes);
    printf("\n  features     ");
    int shown = 0;
    for (int f = 0; f < IB_CPU_FEATURE_COUNT; f++)
        if (ib__cpu_has(cpu, (ib__cpu_feature)f)) {
            printf(" %s", ib__cpu_feature_name((ib__cpu_feature)f));
            shown++;
        }
    printf("%s\n", shown ? "" : " (none detected)");

    printf("GPU\n");
    if (gpu->count == 0) {
        printf("  none (%s)\n", gpu->note);
        return;
    }
    printf("  driver        %s", gpu->driver_version[0] ? gpu->driver_version : "?");
    if (gpu->cuda_version > 0)
        printf(", CUDA %d.%d", gpu->cuda_version / 1000, (gpu->cuda_version % 1000) / 10);
    printf(" (via %s)\n", gpu->source);
    printf("  %-3s %-32s %-7s %-5s %s\n", "#", "name", "arch", "SMs", "memory");
    for (int32_t i = 0; i < gpu->count; i++) {
        const ib__gpu_device *d = &gpu->devices[i];
        char sms[16], mem[64];
        if (d->sm_count > 0) snprintf(sms, sizeof sms, "%d", d->sm_count);
        else snprintf(sms, sizeof sms, "?");
        snprintf(mem, sizeof mem, "%.1f GiB", (double)d->total_memory / (1 << 30));
        if (d->free_memory)
            snprintf(mem + strlen(mem), sizeof mem - strlen(mem), " (%.1f GiB free)",
                     (double)d->free_memory / (1 << 30));
        printf("  %-3d %-32s sm_%d%d   %-5s %s\n", i, d->name, d->cc_major, d->cc_minor, sms, mem);
    }
}

static void print_json(const ib__cpu_info *cpu, const ib__gpu_info *gpu) {
    printf("{\"cpu\":{\"arch\":");
    ib__json_string(stdout, cpu->arch);
    printf(",\"vendor\":");
    ib__json_string(stdout, cpu->vendor);
    printf(",\"model\":");
    ib__json_string(stdout, cpu->model_name);
    printf(",\"logical_cpus\":%d,\"usable_cpus\":%d", cpu->logical_cpus, cpu->usable_cpus);
    printf(",\"l1d_bytes\":%lld,\"l2_bytes\":%lld,\"l3_bytes\":%lld,\"cache_line_bytes\":%d",
           (long long)cpu->l1d_bytes, (long long)cpu->l2_bytes, (long long)cpu->l3_bytes,
           cpu->cache_line_bytes);
    printf(",\"features\":[");
    int n = 0;
    for (int f = 0; f < IB_CPU_FEATURE_COUNT; f++)
        if (ib__cpu_has(cpu, (ib__cpu_feature)f)) {
            if (n++) putchar(',');
            ib__json_string(stdout, ib__cpu_feature_name((ib__cpu_feature)f));
        }
    printf("]},\"gpu\":{\"source\":");
    ib__json_string(stdout, gpu->source);
    printf(",\"driver_version\":");
    ib__json_string(stdout, gpu->driver_version);
    printf(",\"cuda_version\":%d,\"note\":", gpu->cuda_version);
    ib__json_string(stdout, gpu->note);
    printf(",\"devices\":[");
    for (int32_t i = 0; i < gpu->count; i++) {
        const ib__gpu_device *d = &gpu->devices[i];
        printf("%s{\"index\":%d,\"name\":", i ? "," : "", i);
        ib__json_string(stdout, d->name);
        printf(",\"compute_capability\":\"%d.%d\",\"sm_count\":%d,\"total_memory_bytes\":%llu,"
               "\"free_memory_bytes\":%llu}",
               d->cc_major, d->cc_minor, d->sm_count, (unsigned long long)d->total_memory,
               (unsigned long long)d->free_memory);
    }
    printf("]}}\n");
}

int ib__cmd_hw(int argc, char **argv) {
    bool json = false;
    const ib__cli_opt options[] = {{"--json", NULL, IB_CLI_FLAG, &json, 0, 0}};
    int parsed = ib__cli_parse_list("hw", argc, argv, options, 1, NULL, usage);
    if (parsed >= 0) return parsed;
    ib__cpu_info cpu;
    ib__gpu_info gpu;
    ib__cpu_detect(&cpu);
    ib__gpu_detect(&gpu);
    if (json) print_json(&cpu, &gpu);
    else print_table(&cpu, &gpu);
    return fflush(stdout) == 0 ? IB_EXIT_OK : IB_EXIT_FAILURE;
}
