//! Just enough Gherkin for the agent spec's feature files: a background, scenarios, scenario
//! outlines with their examples, and steps with data tables.

#[derive(Debug, Clone)]
pub struct Step {
    pub text: String,
    /// Data table rows, the header row included.
    pub table: Vec<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub steps: Vec<Step>,
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_owned()).collect()
}

/// Parses a feature file; outlines come out once per example row, placeholders replaced; the
/// background's steps come first in every scenario.
pub fn parse(text: &str) -> Vec<Scenario> {
    let mut out = Vec::new();
    let mut background = Scenario {
        name: "Background".into(),
        steps: vec![],
    };
    let mut in_background = false;
    let mut current: Option<(Scenario, bool)> = None;
    let mut examples: Vec<Vec<String>> = Vec::new();
    let mut in_examples = false;
    let flush = |cur: Option<(Scenario, bool)>,
                 examples: &mut Vec<Vec<String>>,
                 out: &mut Vec<Scenario>| {
        let Some((sc, outline)) = cur else { return };
        if !outline {
            out.push(sc);
            return;
        }
        // An outline without examples (the spec has some) is one plain scenario.
        let Some((header, rows)) = examples.split_first() else {
            out.push(sc);
            return;
        };
        for row in rows {
            let subst = |s: &str| {
                header.iter().zip(row).fold(s.to_owned(), |acc, (k, v)| {
                    acc.replace(&format!("<{k}>"), v)
                })
            };
            out.push(Scenario {
                name: format!("{} {:?}", sc.name, row),
                steps: sc
                    .steps
                    .iter()
                    .map(|st| Step {
                        text: subst(&st.text),
                        table: st
                            .table
                            .iter()
                            .map(|r| r.iter().map(|c| subst(c)).collect())
                            .collect(),
                    })
                    .collect(),
            });
        }
        examples.clear();
    };
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with("Feature:") {
            continue;
        }
        if let Some(name) = t
            .strip_prefix("Scenario Outline:")
            .or_else(|| t.strip_prefix("Scenario Template:"))
        {
            flush(current.take(), &mut examples, &mut out);
            current = Some((
                Scenario {
                    name: name.trim().into(),
                    steps: background.steps.clone(),
                },
                true,
            ));
            in_examples = false;
            in_background = false;
        } else if let Some(name) = t.strip_prefix("Scenario:") {
            flush(current.take(), &mut examples, &mut out);
            current = Some((
                Scenario {
                    name: name.trim().into(),
                    steps: background.steps.clone(),
                },
                false,
            ));
            in_examples = false;
            in_background = false;
        } else if t.starts_with("Background:") {
            in_background = true;
        } else if t.starts_with("Examples:") {
            in_examples = true;
        } else if t.starts_with('|') {
            let scenario = steps_of(in_background, &mut background, &mut current);
            if in_examples {
                examples.push(cells(t));
            } else if let Some(step) = scenario.and_then(|sc| sc.steps.last_mut()) {
                step.table.push(cells(t));
            }
        } else if let Some(sc) = steps_of(in_background, &mut background, &mut current) {
            let text = ["Given ", "When ", "Then ", "And ", "But "]
                .iter()
                .find_map(|k| t.strip_prefix(k))
                .unwrap_or(t);
            sc.steps.push(Step {
                text: text.to_owned(),
                table: vec![],
            });
        }
    }
    flush(current.take(), &mut examples, &mut out);
    out
}

/// Where the step being read goes: the background, or the scenario being read.
fn steps_of<'a>(
    in_background: bool,
    background: &'a mut Scenario,
    current: &'a mut Option<(Scenario, bool)>,
) -> Option<&'a mut Scenario> {
    if in_background {
        Some(background)
    } else {
        current.as_mut().map(|(sc, _)| sc)
    }
}

/// The text between the first pair of single quotes of a step.
pub fn quoted(text: &str) -> Option<&str> {
    let start = text.find('\'')? + 1;
    let end = text.rfind('\'')?;
    (end > start).then(|| &text[start..end])
}
