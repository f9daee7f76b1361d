/* What the repository ships must read the same on every machine: the committed results and
 * reports (bench/RESULTS.md, everything under apps/results/) hold no absolute path of the
 * machine that made them (a data folder, an output folder). Paths are written relative to the
 * repository, or as the data set's name. */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The first absolute path in text[0..n): a '/' at the start or after a space, a bracket, a
 * quote, '=', ':' or ',', then a name of letters, digits, '.', '_' or '-', then another '/'
 * ("/work/runs", "(/home/me/x"; not "MB/s", "a/b", "https://host/x", "1/2"). Writes it (up to
 * its end) to found; returns its line number (1-based), or 0 when there is none. */
static int first_absolute_path(const char *text, size_t n, char *found, size_t cap)
{
    int line = 1;
    for (size_t i = 0; i < n; i++) {
        if (text[i] == '\n') line++;
        if (text[i] != '/') continue;
        char before = i ? text[i - 1] : ' ';
        if (!strchr(" \t\n(`'\"=:,", before)) continue;
        size_t j = i + 1;
        while (j < n && (text[j] == '.' || text[j] == '_' || text[j] == '-' || (text[j] >= 'a' && text[j] <= 'z') ||
                         (text[j] >= 'A' && text[j] <= 'Z') || (text[j] >= '0' && text[j] <= '9')))
            j++;
        if (j == i + 1 || j >= n || text[j] != '/') continue;
        size_t k = i;
        while (k < n && !strchr(" \t\n)`'\",", text[k]) && k - i + 1 < cap) k++;
        memcpy(found, text + i, k - i);
        found[k - i] = 0;
        return line;
    }
    return 0;
}

/* every text file under path (a file or a folder), checked; the offenders appended to report */
static void scan(const char *path, char *report, size_t cap)
{
    struct stat st;
    if (stat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        ck_assert_msg(d != NULL, "cannot open %s", path);
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
            if (e->d_name[0] == '.') continue;
            char sub[1024];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            scan(sub, report, cap);
        }
        closedir(d);
        return;
    }
    static const char *text_ext[] = {".md", ".csv", ".json", ".txt", ".gp", ".log"};
    const char *dot = strrchr(path, '.');
    int text = 0;
    for (size_t k = 0; dot && k < sizeof text_ext / sizeof text_ext[0]; k++) text |= strcmp(dot, text_ext[k]) == 0;
    if (!text) return;
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot read %s", path);
    char *buf = malloc((size_t)st.st_size + 1);
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    fclose(f);
    char found[256];
    int line = first_absolute_path(buf, n, found, sizeof found);
    if (line) snprintf(report + strlen(report), cap - strlen(report), "\n  %s:%d: %s", path, line, found);
    free(buf);
}

START_TEST(absolute_path_finder)
{
    char found[256];
    static const char *machine[] = {"data: /work/shared/cifar-10-batches-bin", "(OUT=/work/runs/practical)",
                                    "see `/home/me/x.csv`", "/root/a/b at the start", "a,/tmp/x/y"};
    for (size_t k = 0; k < sizeof machine / sizeof machine[0]; k++)
        ck_assert_msg(first_absolute_path(machine[k], strlen(machine[k]), found, sizeof found) == 1,
                      "missed the path in '%s'", machine[k]);
    static const char *fine[] = {"32.4 s/epoch, 5474 img/s, 8.6 GB/s", "apps/results/ResNet/metrics.csv",
                                 "https://example.org/a/b", "1/2 of 3/4", "a / b / c", "(/ alone)"};
    for (size_t k = 0; k < sizeof fine / sizeof fine[0]; k++)
        ck_assert_msg(first_absolute_path(fine[k], strlen(fine[k]), found, sizeof found) == 0,
                      "'%s' taken for a machine path: %s", fine[k], found);
    const char *two = "line one\nmade in /work/runs/x/REPORT.md\n";
    ck_assert_int_eq(first_absolute_path(two, strlen(two), found, sizeof found), 2);
    ck_assert_str_eq(found, "/work/runs/x/REPORT.md");
}
END_TEST

START_TEST(committed_results_name_no_machine_folder)
{
    char report[8192] = "";
    scan("bench/RESULTS.md", report, sizeof report);
    scan("apps/results", report, sizeof report);
    ck_assert_msg(report[0] == 0, "committed results name a folder of the machine that made them "
                  "(write it relative to the repository, or the data set's name):%s", report);
}
END_TEST

Suite *suite_committed(void)
{
    Suite *s = suite_create("committed files");
    TCase *t = tcase_create("paths");
    tcase_add_test(t, absolute_path_finder);
    tcase_add_test(t, committed_results_name_no_machine_folder);
    suite_add_tcase(s, t);
    return s;
}
