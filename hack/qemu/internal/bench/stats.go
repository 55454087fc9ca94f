package bench

import (
	"math"
	"slices"
)

// Summary is the median and range of a set of values.
type Summary struct {
	N           int
	Median      float64
	Min, Max    float64
	Mean        float64
	RangeFactor float64 // Max/Min: 1 means the runs agreed; 0 when Min is 0 or N is 0
}

// Summarize returns the median (the mean of the middle two for an even
// count), minimum, maximum and mean of vs. NaNs are ignored; no values give
// the zero Summary.
func Summarize(vs []float64) Summary {
	xs := make([]float64, 0, len(vs))
	for _, v := range vs {
		if !math.IsNaN(v) {
			xs = append(xs, v)
		}
	}
	if len(xs) == 0 {
		return Summary{}
	}
	slices.Sort(xs)
	s := Summary{N: len(xs), Min: xs[0], Max: xs[len(xs)-1]}
	if n := len(xs); n%2 == 1 {
		s.Median = xs[n/2]
	} else {
		s.Median = (xs[n/2-1] + xs[n/2]) / 2
	}
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	s.Mean = sum / float64(len(xs))
	if s.Min > 0 {
		s.RangeFactor = s.Max / s.Min
	}
	return s
}

// Ratio is a/b, or NaN when either side is missing (zero or NaN).
func Ratio(a, b float64) float64 {
	if a == 0 || b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return math.NaN()
	}
	return a / b
}
