// Command classifier is an example process plugin: a naive Bayes classifier
// over the lowercase words of a message's Subject and the start of its body.
// It tags each message "likely-spam" or "likely-ham" and stores the spam
// score (0 to 1) in the message's metadata as spam_score.
//
// It learns from the built-in examples below, or from the file named by the
// training_file setting: one example a line, "spam" or "ham", a tab, the
// text. The agent starts it once and sends it every event; a training file
// is read on first use and kept.
package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"github.com/mairust/mairust/agent/plugins/sdk"
	"github.com/mairust/mairust/agent/plugins/sdk/process"
)

// builtin are the examples the classifier learns from without a training file.
const builtin = `spam	You are a WINNER claim your free prize now
spam	Cheap meds online no prescription needed
spam	Limited time offer buy now and save 90 percent
spam	Earn money fast working from home guaranteed
spam	Congratulations you won the lottery click here
spam	Exclusive deal free gift card for you act now
spam	Lose weight fast with this one weird trick
spam	Urgent your account will be suspended verify your password now
spam	Hot singles in your area click now
spam	Make thousands per week guaranteed income no risk
spam	Free viagra cheap pills discount offer
spam	Claim your cash bonus today limited offer
ham	Meeting notes from the project review on Tuesday
ham	Can we move our call to Thursday afternoon
ham	Invoice for the March consulting work attached
ham	Lunch tomorrow with the team at noon
ham	Draft of the quarterly report for your comments
ham	Re: question about the deployment schedule
ham	Minutes of the board meeting and next agenda
ham	Your pull request was merged into main
ham	Family dinner on Sunday at grandma's house
ham	Agenda for the weekly planning meeting
ham	Photos from the weekend hiking trip
ham	Reminder: dentist appointment next Monday`

// model is a trained naive Bayes classifier with two classes.
type model struct {
	docs   [2]int            // examples per class: spam, ham
	words  [2]int            // word occurrences per class
	counts [2]map[string]int // occurrences of each word per class
	vocab  map[string]bool
}

const (
	spam = 0
	ham  = 1
)

// train reads examples, one a line: "spam" or "ham", a tab, the text.
func train(examples string) (*model, error) {
	m := &model{counts: [2]map[string]int{{}, {}}, vocab: map[string]bool{}}
	for n, line := range strings.Split(examples, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		label, text, ok := strings.Cut(line, "\t")
		class, known := map[string]int{"spam": spam, "ham": ham}[label]
		if !ok || !known {
			return nil, fmt.Errorf("line %d: want spam or ham, a tab, then the text", n+1)
		}
		m.docs[class]++
		for _, w := range tokens(text) {
			m.counts[class][w]++
			m.words[class]++
			m.vocab[w] = true
		}
	}
	if m.docs[spam] == 0 || m.docs[ham] == 0 {
		return nil, errors.New("need at least one spam and one ham example")
	}
	return m, nil
}

// tokens are the lowercase words of s: runs of letters and digits.
func tokens(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
}

// score is the probability that words are spam, with add-one smoothing.
func (m *model) score(words []string) float64 {
	var logp [2]float64
	total := float64(m.docs[spam] + m.docs[ham])
	v := float64(len(m.vocab))
	for c := range 2 {
		logp[c] = math.Log(float64(m.docs[c]) / total)
		for _, w := range words {
			logp[c] += math.Log((float64(m.counts[c][w]) + 1) / (float64(m.words[c]) + v))
		}
	}
	return 1 / (1 + math.Exp(logp[ham]-logp[spam]))
}

// classifier keeps the built-in model and those of training files.
type classifier struct {
	builtin *model
	mu      sync.Mutex
	files   map[string]*model
}

// model returns the model of the training file path, or the built-in one.
func (c *classifier) model(path string) (*model, error) {
	if path == "" {
		return c.builtin, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.files[path]; m != nil {
		return m, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := train(string(data))
	if err != nil {
		return nil, fmt.Errorf("training file %s: %w", path, err)
	}
	c.files[path] = m
	return m, nil
}

// classify tags ev's message likely-spam or likely-ham.
func (c *classifier) classify(_ context.Context, ev sdk.Event) (sdk.Result, error) {
	path, _ := ev.Settings["training_file"].(string)
	threshold, ok := ev.Settings["threshold"].(float64)
	if !ok {
		threshold = 0.5
	}
	m, err := c.model(path)
	if err != nil {
		return sdk.Result{}, err
	}
	var text strings.Builder
	for _, h := range ev.Message.Headers {
		if strings.EqualFold(h.Name, "Subject") {
			text.WriteString(h.Value + "\n")
		}
	}
	if b := ev.Message.Body; b != nil {
		text.WriteString(b.Text[:min(len(b.Text), sdk.PreviewBytes)])
	}
	p := m.score(tokens(text.String()))
	tag := "likely-ham"
	if p >= threshold {
		tag = "likely-spam"
	}
	return sdk.Result{
		Tags:     []string{tag},
		Metadata: map[string]string{"spam_score": strconv.FormatFloat(p, 'f', 3, 64), "classifier": "naive-bayes"},
	}, nil
}

// health reports what the built-in model learnt from.
func (c *classifier) health(context.Context) (string, string) {
	m := c.builtin
	return process.StatusOK, fmt.Sprintf("trained on %d spam and %d ham examples", m.docs[spam], m.docs[ham])
}

func main() {
	m, err := train(builtin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "classifier:", err)
		os.Exit(1)
	}
	c := &classifier{builtin: m, files: map[string]*model{}}
	process.Serve(c.classify, process.WithHealth(c.health))
}
