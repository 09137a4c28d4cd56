"""Tests of the benchmark harness (run by scripts/test.sh): BENCHMARKS.md is exactly what the
generator makes from bench/results.json, and a partial run (--only) replaces only its figures,
each keeping its own date, commit and machine."""

import copy
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import figures  # noqa: E402
import harness  # noqa: E402


class Generated(unittest.TestCase):
    def test_benchmarks_md_is_exactly_what_the_generator_makes_from_results_json(self):
        with open(harness.MARKDOWN) as f:
            on_disk = f.read()
        self.assertEqual(on_disk, harness.render(harness.load(harness.RESULTS)),
                         "BENCHMARKS.md is generated: run python3 bench/run.py --render")

    def test_every_stored_figure_is_one_the_harness_measures_with_its_own_provenance(self):
        stored = harness.load(harness.RESULTS)["figures"]
        self.assertEqual(sorted(stored), sorted(figures.BENCHES))
        for name, rec in stored.items():
            for key in ("date", "commit", "machine", "command", "raw"):
                self.assertIn(key, rec, name)
            self.assertTrue(rec["command"].startswith("python3 bench/run.py"), name)

    def test_a_partial_run_replaces_its_figure_and_keeps_the_others_machine_and_commit(self):
        results = harness.load(harness.RESULTS)
        before = copy.deepcopy(results)
        other_machine = {"cpu": "Other CPU", "cores": 8, "memory_gib": 64}
        new = {"date": "2030-01-01", "commit": "abc1234", "machine": other_machine,
               "command": "python3 bench/run.py --only verify", "raw": results["figures"]["verify"]["raw"]}
        merged = harness.merge(results, "verify", new)
        self.assertEqual(results, before, "merge changes no input")
        self.assertEqual(merged["figures"]["verify"], new)
        for name in figures.BENCHES:
            if name != "verify":
                self.assertEqual(merged["figures"][name], before["figures"][name], name)
        table = harness.render(merged)
        verify_rows = [line for line in table.splitlines() if line.startswith("| upload verification")]
        self.assertEqual(len(verify_rows), 1)
        self.assertIn("| 2030-01-01 | abc1234 | Other CPU, 8 cores, 64 GiB |", verify_rows[0])
        redirect_row = next(line for line in table.splitlines() if line.startswith("| redirect, embedded, public file"))
        old = before["figures"]["redirect"]
        self.assertIn(f"| {old['date']} | {old['commit']} | {harness.machine_label(old['machine'])} |", redirect_row)

    def test_each_figure_has_one_to_three_lines_on_what_limits_it(self):
        for name in figures.BENCHES:
            self.assertTrue(1 <= len(figures.LIMITS[name]) <= 3, name)

    def test_a_row_has_every_column_and_no_line_break(self):
        table = harness.render(harness.load(harness.RESULTS))
        rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
        header = rows[0]
        self.assertEqual(header, "| " + " | ".join(harness.COLUMNS) + " |")
        for row in rows[1:]:
            cells = row.replace("\\|", "").split(" | ")
            self.assertEqual(len(cells), len(harness.COLUMNS), row)


if __name__ == "__main__":
    unittest.main()
