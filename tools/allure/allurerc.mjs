// Allure 3 configuration for `mlflow-matrix report` / `tox -e report`.
//
// The harness (harness/reporting/allure_report.py) writes the run-specific data — report name,
// output, history file, one environment per platform with its versions, and the failure
// categories — to a JSON file and points MLFLOW_MATRIX_ALLURE_SETTINGS at it. This file only
// turns that data into an Allure config: environment matchers have to be functions, which a
// declarative allurerc.json cannot hold.
//
// Two report variants from one `allure generate` (so history is appended once):
//   <output>/awesome/      multi-file Awesome report (serve it: `npx allure open <output>/awesome`)
//   <output>/single-file/  the same report as one HTML file that opens from disk, no web server
//   <output>/index.html    Allure's summary page linking both
import { readFileSync } from "node:fs";
import { env } from "node:process";

const settingsPath = env.MLFLOW_MATRIX_ALLURE_SETTINGS;
if (!settingsPath) {
  throw new Error("MLFLOW_MATRIX_ALLURE_SETTINGS is not set; run `mlflow-matrix report` instead");
}
const settings = JSON.parse(readFileSync(settingsPath, "utf-8"));

// A result belongs to the environment of its `platform` label (set by harness/plugin.py for
// scenarios and by harness/reporting/allure_results.py for lifecycle phases).
const environments = Object.fromEntries(
  settings.environments.map(({ id, name, platform, variables }) => [
    id,
    {
      name,
      variables,
      matcher: ({ labels }) => labels.some((label) => label.name === "platform" && label.value === platform),
    },
  ]),
);

const awesome = {
  reportName: settings.name,
  reportLanguage: "en",
  groupBy: ["parentSuite", "suite", "subSuite"],
};

export default {
  name: settings.name,
  output: settings.output,
  historyPath: settings.historyPath,
  historyLimit: settings.historyLimit,
  // false when the newest history entry already holds these results (report built twice)
  appendHistory: settings.appendHistory ?? true,
  environments,
  variables: settings.variables,
  // Object matchers only (label values and messages are regular expressions); the first match wins.
  categories: settings.categories,
  // Known defects that reproduced: failures marked as known issues (counted apart in the summary)
  ...(settings.resolutions?.rules?.length ? { resolutions: settings.resolutions } : {}),
  plugins: {
    awesome: { options: { ...awesome, singleFile: false } },
    "single-file": {
      import: "@allurereport/plugin-awesome",
      // the summary page lists both variants: tell them apart
      options: { ...awesome, reportName: `${settings.name} (single file)`, singleFile: true },
    },
  },
};
