/*
 * insn_count: a QEMU TCG plugin (API v1, qemu-user 7.2) that counts the AArch64
 * instructions a guest executes, by class, for the repnext emulation benchmarks.
 *
 * How it counts
 *   - At translation time every instruction of a translation block (TB) is
 *     classified by decoding its 32-bit opcode (not from the disassembly text:
 *     QEMU 7.2 prints several FEAT_FP16 forms as ".byte", so text matching would
 *     miss fmla .8h).  The TB gets a record holding its per-class counts.
 *   - At execution time one inline "add 1" op bumps the TB's execution counter;
 *     nothing else runs per instruction, so the overhead is one memory add per TB.
 *   - At exit, class totals = sum over TBs of (class count in TB) x (executions).
 *     A TB left early (a fault in its middle) is counted as if it ran to its end;
 *     in user mode this only happens on signals, which the workloads do not raise.
 *
 * Threads: translation callbacks are serialised by QEMU, and the record list is
 * also guarded by a mutex.  The inline counters are plain (non-atomic) adds shared
 * by all vCPUs, so with one guest thread counts are exact; with several threads
 * running the same TB at once increments can be lost (an undercount).  Run the
 * engines with one thread (OMP_NUM_THREADS=1 etc.) for exact figures; the output's "threads" says how many
 * guest threads (vCPUs) were started, so a multi-threaded run can be told apart.
 *
 * Arguments (qemu-aarch64 -plugin ./insn_count.so,out=FILE[,tbdump=FILE][,xcheck=on])
 *   out=FILE     JSON with the totals (written to FILE.tmp.PID, then renamed).
 *   tbdump=FILE  one line per executed TB: "vaddr hexbytes executions" (atomic too).
 *   xcheck=on    also read QEMU's disassembly of each translated instruction and
 *                report (per translation, not per execution) how often the opcode
 *                decoder and the text agree on fmla/fmls.
 */
#include <errno.h>
#include <glib.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

/* Instruction classes; an instruction may fall in several (e.g. FMA_V4S and FPSIMD_DP). */
enum {
    C_SIMD_LOAD,    /* load into a SIMD&FP register: ld1..ld4, ldr/ldur b/h/s/d/q, ldp s/d/q, ldr literal */
    C_SIMD_STORE,   /* store of a SIMD&FP register: st1..st4, str/stur, stp */
    C_GP_LOAD,      /* every other load-group instruction with L=1 (incl. exclusives, prefetch) */
    C_GP_STORE,     /* every other load/store-group instruction */
    C_FPSIMD_DP,    /* the whole "data processing, scalar FP and Advanced SIMD" encoding group */
    C_BRANCH,       /* branches, exception generation, system instructions */
    C_FMA_V4S,      /* fmla/fmls vector .4s (same-type and by-element) */
    C_FMA_V2S,
    C_FMA_V2D,
    C_FMA_V8H,      /* FEAT_FP16 fmla/fmls .8h */
    C_FMA_V4H,
    C_FMA_SCALAR,   /* fmadd/fmsub/fnmadd/fnmsub and scalar fmla/fmls by element (any precision) */
    C_FMA_BYELEM,   /* subset of the above: the by-element (indexed) forms, vector or scalar */
    N_CLASSES
};

static const char *const class_names[N_CLASSES] = {
    "simd_load", "simd_store", "gp_load", "gp_store", "fpsimd_dp", "branch_sys",
    "fma_v4s", "fma_v2s", "fma_v2d", "fma_v8h", "fma_v4h", "fma_scalar", "fma_byelem",
};

typedef struct {
    uint64_t execs;            /* bumped inline by QEMU: must stay first-class memory */
    uint64_t vaddr;
    uint32_t n_insns;
    uint32_t n_bytes;
    uint32_t counts[N_CLASSES];
    uint8_t *bytes;            /* only kept when a TB dump was asked for */
} tb_record;

static GMutex lock;
static GPtrArray *records;
static const char *out_path;
static const char *tbdump_path;
static bool xcheck;
static uint64_t xc_both, xc_opcode_only, xc_text_only;
static unsigned int vcpus_started; /* one per guest thread in user mode: >1 means the counts may be racy */

static void on_vcpu_init(qemu_plugin_id_t id, unsigned int vcpu_index)
{
    g_mutex_lock(&lock);
    vcpus_started++;
    g_mutex_unlock(&lock);
}

/* Classify one A64 instruction word into the class counters of a TB. */
static void classify(uint32_t w, uint32_t *counts)
{
    /* Loads and stores: op0 (bits 28:25) = x1x0. */
    if ((w & 0x0A000000u) == 0x08000000u) {
        bool simd = (w >> 26) & 1u;
        /* Load-register-literal (bits 29:27 = 011, 25:24 = 00) always loads; elsewhere bit 22 is L. */
        bool literal = (w & 0x3B000000u) == 0x18000000u;
        bool load = literal || ((w >> 22) & 1u);
        if (simd) {
            counts[load ? C_SIMD_LOAD : C_SIMD_STORE]++;
        } else {
            counts[load ? C_GP_LOAD : C_GP_STORE]++;
        }
        return;
    }
    /* Branches, exception generation and system: op0 = 101x. */
    if ((w & 0x1C000000u) == 0x14000000u) {
        counts[C_BRANCH]++;
        return;
    }
    /* Data processing, scalar FP and Advanced SIMD: op0 = x111. */
    if ((w & 0x0E000000u) != 0x0E000000u) {
        return;
    }
    counts[C_FPSIMD_DP]++;

    /* Advanced SIMD three same (fp32/fp64): 0 Q 0 01110 a sz 1 Rm 11001 1 Rn Rd; a=0 fmla, a=1 fmls. */
    if ((w & 0xBF20FC00u) == 0x0E20CC00u) {
        bool q = (w >> 30) & 1u, dbl = (w >> 22) & 1u;
        counts[dbl ? C_FMA_V2D : (q ? C_FMA_V4S : C_FMA_V2S)]++;
        return;
    }
    /* Advanced SIMD three same fp16: 0 Q 0 01110 a 10 Rm 00 001 1 Rn Rd. */
    if ((w & 0xBF60FC00u) == 0x0E400C00u) {
        counts[((w >> 30) & 1u) ? C_FMA_V8H : C_FMA_V4H]++;
        return;
    }
    /* Vector by element: 0 Q 0 01111 size L M Rm o 0 01 H 0 Rn Rd, opcode 0001 fmla / 0101 fmls. */
    if ((w & 0xBF00B400u) == 0x0F001000u) {
        bool q = (w >> 30) & 1u;
        uint32_t size = (w >> 22) & 3u;
        if (size == 0) {
            counts[q ? C_FMA_V8H : C_FMA_V4H]++;
        } else if (size == 2) {
            counts[q ? C_FMA_V4S : C_FMA_V2S]++;
        } else if (size == 3) {
            counts[C_FMA_V2D]++;
        } else {
            return; /* size 01 is unallocated */
        }
        counts[C_FMA_BYELEM]++;
        return;
    }
    /* Scalar by element: 01 0 11111 size L M Rm o 0 01 H 0 Rn Rd. */
    if ((w & 0xFF00B400u) == 0x5F001000u && ((w >> 22) & 3u) != 1u) {
        counts[C_FMA_SCALAR]++;
        counts[C_FMA_BYELEM]++;
        return;
    }
    /* Scalar fused multiply-add, 3 sources: 0 0 0 11111 ftype o1 Rm o0 Ra Rn Rd (ftype != 10). */
    if ((w & 0xFF000000u) == 0x1F000000u && ((w >> 22) & 3u) != 2u) {
        counts[C_FMA_SCALAR]++;
    }
}

static bool is_fma(const uint32_t *counts)
{
    return counts[C_FMA_V4S] + counts[C_FMA_V2S] + counts[C_FMA_V2D] + counts[C_FMA_V8H] +
           counts[C_FMA_V4H] + counts[C_FMA_SCALAR] > 0;
}

/* True when QEMU's disassembly names an fmla/fmls/fmadd-family mnemonic. */
static bool text_says_fma(const char *text)
{
    static const char *const names[] = {"fmla", "fmls", "fmadd", "fmsub", "fnmadd", "fnmsub"};
    while (*text == ' ' || *text == '\t') {
        text++;
    }
    /* QEMU prefixes the disassembly with the raw word ("1e20cc20  fmla ...") on some hosts. */
    const char *sp = strstr(text, "  ");
    if (sp && sp - text == 8) {
        text = sp;
        while (*text == ' ') {
            text++;
        }
    }
    for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
        size_t n = strlen(names[i]);
        if (strncmp(text, names[i], n) == 0 && (text[n] == ' ' || text[n] == '\t' || text[n] == '\0')) {
            return true;
        }
    }
    return false;
}

static void on_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    tb_record *rec = g_new0(tb_record, 1);
    rec->vaddr = qemu_plugin_tb_vaddr(tb);
    rec->n_insns = (uint32_t)n;
    if (tbdump_path) {
        rec->bytes = g_malloc(n * 4);
    }
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        size_t sz = qemu_plugin_insn_size(insn);
        uint32_t w = 0;
        memcpy(&w, qemu_plugin_insn_data(insn), sz < 4 ? sz : 4); /* A64 words are little-endian */
        if (rec->bytes && rec->n_bytes + 4 <= n * 4) {
            memcpy(rec->bytes + rec->n_bytes, &w, 4);
            rec->n_bytes += 4;
        }
        uint32_t before[N_CLASSES];
        if (xcheck) {
            memcpy(before, rec->counts, sizeof(before));
        }
        classify(w, rec->counts);
        if (xcheck) {
            uint32_t delta[N_CLASSES];
            for (int c = 0; c < N_CLASSES; c++) {
                delta[c] = rec->counts[c] - before[c];
            }
            char *text = qemu_plugin_insn_disas(insn);
            bool by_text = text && text_says_fma(text);
            bool by_op = is_fma(delta);
            g_mutex_lock(&lock);
            xc_both += by_text && by_op;
            xc_opcode_only += by_op && !by_text;
            xc_text_only += by_text && !by_op;
            g_mutex_unlock(&lock);
            g_free(text);
        }
    }
    g_mutex_lock(&lock);
    g_ptr_array_add(records, rec);
    g_mutex_unlock(&lock);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &rec->execs, 1);
}

/* Write text to path atomically (temp file in the same folder, then rename). */
static void write_atomically(const char *path, const GString *text)
{
    char *tmp = g_strdup_printf("%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "insn_count: cannot write %s: %s\n", tmp, strerror(errno));
        g_free(tmp);
        return;
    }
    size_t written = fwrite(text->str, 1, text->len, f);
    if (fclose(f) != 0 || written != text->len || rename(tmp, path) != 0) {
        fprintf(stderr, "insn_count: cannot write %s: %s\n", path, strerror(errno));
        unlink(tmp);
    }
    g_free(tmp);
}

static void at_exit_report(qemu_plugin_id_t id, void *userdata)
{
    uint64_t total = 0, tbs_run = 0, totals[N_CLASSES] = {0};
    g_mutex_lock(&lock);
    GString *dump = tbdump_path ? g_string_sized_new(1 << 20) : NULL;
    for (guint i = 0; i < records->len; i++) {
        tb_record *rec = g_ptr_array_index(records, i);
        uint64_t e = rec->execs;
        if (!e) {
            continue;
        }
        tbs_run++;
        total += e * rec->n_insns;
        for (int c = 0; c < N_CLASSES; c++) {
            totals[c] += e * rec->counts[c];
        }
        if (dump) {
            g_string_append_printf(dump, "%" PRIx64 " ", rec->vaddr);
            for (uint32_t b = 0; b < rec->n_bytes; b++) {
                g_string_append_printf(dump, "%02x", rec->bytes[b]);
            }
            g_string_append_printf(dump, " %" PRIu64 "\n", e);
        }
    }
    GString *js = g_string_new("{\n");
    g_string_append_printf(js, "  \"insns\": %" PRIu64 ",\n", total);
    for (int c = 0; c < N_CLASSES; c++) {
        g_string_append_printf(js, "  \"%s\": %" PRIu64 ",\n", class_names[c], totals[c]);
    }
    g_string_append_printf(js, "  \"tbs_translated\": %u,\n  \"tbs_executed\": %" PRIu64 ",\n",
                           records->len, tbs_run);
    g_string_append_printf(js, "  \"threads\": %u,\n", vcpus_started);
    if (xcheck) {
        g_string_append_printf(js,
                               "  \"xcheck_fma_static\": {\"both\": %" PRIu64 ", \"opcode_only\": %" PRIu64
                               ", \"text_only\": %" PRIu64 "},\n",
                               xc_both, xc_opcode_only, xc_text_only);
    }
    g_string_append(js, "  \"plugin\": \"insn_count/1\"\n}\n");
    g_mutex_unlock(&lock);
    if (dump) {
        write_atomically(tbdump_path, dump);
        g_string_free(dump, TRUE);
    }
    write_atomically(out_path, js);
    g_string_free(js, TRUE);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                                           char **argv)
{
    if (strcmp(info->target_name, "aarch64") != 0) {
        fprintf(stderr, "insn_count: only decodes aarch64 guests, not %s\n", info->target_name);
        return -1;
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (g_str_has_prefix(a, "out=")) {
            out_path = a + 4;
        } else if (g_str_has_prefix(a, "tbdump=")) {
            tbdump_path = a + 7;
        } else if (g_str_has_prefix(a, "xcheck=")) {
            if (!qemu_plugin_bool_parse("xcheck", a + 7, &xcheck)) {
                fprintf(stderr, "insn_count: xcheck takes on/off, not %s\n", a + 7);
                return -1;
            }
        } else {
            fprintf(stderr, "insn_count: unknown argument %s (out=FILE, tbdump=FILE, xcheck=on)\n", a);
            return -1;
        }
    }
    if (!out_path) {
        fprintf(stderr, "insn_count: missing out=FILE\n");
        return -1;
    }
    records = g_ptr_array_new();
    qemu_plugin_register_vcpu_init_cb(id, on_vcpu_init);
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit_report, NULL);
    return 0;
}
