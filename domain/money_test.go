package domain_test

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strings"
	"testing"

	"github.com/ordertrail/ordertrail/domain"
)

func TestParseMoney(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		currency string
		want     int64
		wantErr  error
	}{
		{"usd_two_places", "12.50", "USD", 1250, nil},
		{"usd_one_place", "12.5", "USD", 1250, nil},
		{"usd_whole", "12", "USD", 1200, nil},
		{"usd_one_cent", "0.01", "USD", 1, nil},
		{"usd_zero", "0", "USD", 0, nil},
		{"usd_negative", "-1.00", "USD", -100, nil},
		{"usd_negative_zero", "-0.00", "USD", 0, nil},
		{"usd_leading_zeros", "007.50", "USD", 750, nil},
		{"usd_max", "92233720368547758.07", "USD", math.MaxInt64, nil},
		{"usd_min", "-92233720368547758.08", "USD", math.MinInt64, nil},
		{"usd_min_plus_one", "-92233720368547758.07", "USD", math.MinInt64 + 1, nil},
		{"jpy_whole", "100", "JPY", 100, nil},
		{"jpy_max", "9223372036854775807", "JPY", math.MaxInt64, nil},
		{"bhd_three_places", "1.234", "BHD", 1234, nil},
		{"bhd_one_place", "1.2", "BHD", 1200, nil},
		{"bhd_fils", "0.005", "BHD", 5, nil},

		{"usd_three_places", "12.505", "USD", 0, domain.ErrInvalidAmount},
		{"usd_trailing_zero_third_place", "12.500", "USD", 0, domain.ErrInvalidAmount},
		{"jpy_fraction", "1.5", "JPY", 0, domain.ErrInvalidAmount},
		{"jpy_point_zero", "100.0", "JPY", 0, domain.ErrInvalidAmount},
		{"bhd_four_places", "1.2345", "BHD", 0, domain.ErrInvalidAmount},
		{"exponent", "1e3", "USD", 0, domain.ErrInvalidAmount},
		{"empty", "", "USD", 0, domain.ErrInvalidAmount},
		{"no_whole_part", ".5", "USD", 0, domain.ErrInvalidAmount},
		{"no_fraction_after_point", "5.", "USD", 0, domain.ErrInvalidAmount},
		{"letters", "abc", "USD", 0, domain.ErrInvalidAmount},
		{"plus_sign", "+1", "USD", 0, domain.ErrInvalidAmount},
		{"leading_space", " 1", "USD", 0, domain.ErrInvalidAmount},
		{"trailing_space", "1 ", "USD", 0, domain.ErrInvalidAmount},
		{"minus_only", "-", "USD", 0, domain.ErrInvalidAmount},
		{"double_minus", "--1", "USD", 0, domain.ErrInvalidAmount},
		{"minus_then_point", "-.5", "USD", 0, domain.ErrInvalidAmount},
		{"two_points", "1.2.3", "USD", 0, domain.ErrInvalidAmount},
		{"decimal_comma", "1,50", "USD", 0, domain.ErrInvalidAmount},
		{"thousands_separator", "1,000.00", "USD", 0, domain.ErrInvalidAmount},
		{"point_only", ".", "USD", 0, domain.ErrInvalidAmount},
		{"non_ascii_digit", "١٢", "USD", 0, domain.ErrInvalidAmount},
		{"hex", "0x10", "USD", 0, domain.ErrInvalidAmount},
		{"underscore", "1_000", "USD", 0, domain.ErrInvalidAmount},
		{"usd_overflow", "92233720368547758.08", "USD", 0, domain.ErrInvalidAmount},
		{"usd_negative_overflow", "-92233720368547758.09", "USD", 0, domain.ErrInvalidAmount},
		{"jpy_overflow", "9223372036854775808", "JPY", 0, domain.ErrInvalidAmount},
		{"huge", strings.Repeat("9", 100), "USD", 0, domain.ErrInvalidAmount},

		{"unknown_currency", "1.00", "XXX", 0, domain.ErrUnknownCurrency},
		{"lower_case_currency", "1.00", "usd", 0, domain.ErrUnknownCurrency},
		{"empty_currency", "1.00", "", 0, domain.ErrUnknownCurrency},
		{"currency_checked_first", "abc", "XXX", 0, domain.ErrUnknownCurrency},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := domain.ParseMoney(tt.in, tt.currency)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !errors.Is(err, domain.ErrInvalidInput) {
					t.Fatalf("ParseMoney(%q, %s) = %+v, %v; want %v of kind %v", tt.in, tt.currency, got, err, tt.wantErr, domain.ErrInvalidInput)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseMoney(%q, %s): %v", tt.in, tt.currency, err)
			}
			if want := (domain.Money{Amount: tt.want, Currency: tt.currency}); got != want {
				t.Errorf("ParseMoney(%q, %s) = %+v, want %+v", tt.in, tt.currency, got, want)
			}
		})
	}
}

func TestMoneyString(t *testing.T) {
	tests := []struct {
		name  string
		money domain.Money
		want  string
	}{
		{"usd", domain.Money{Amount: 1250, Currency: "USD"}, "12.50"},
		{"usd_cent", domain.Money{Amount: 1, Currency: "USD"}, "0.01"},
		{"usd_ten_cents", domain.Money{Amount: 10, Currency: "USD"}, "0.10"},
		{"usd_zero", domain.Money{Amount: 0, Currency: "USD"}, "0.00"},
		{"usd_negative_cent", domain.Money{Amount: -1, Currency: "USD"}, "-0.01"},
		{"usd_negative", domain.Money{Amount: -100, Currency: "USD"}, "-1.00"},
		{"usd_max", domain.Money{Amount: math.MaxInt64, Currency: "USD"}, "92233720368547758.07"},
		{"usd_min", domain.Money{Amount: math.MinInt64, Currency: "USD"}, "-92233720368547758.08"},
		{"jpy", domain.Money{Amount: 100, Currency: "JPY"}, "100"},
		{"jpy_negative", domain.Money{Amount: -5, Currency: "JPY"}, "-5"},
		{"jpy_min", domain.Money{Amount: math.MinInt64, Currency: "JPY"}, "-9223372036854775808"},
		{"bhd", domain.Money{Amount: 1234, Currency: "BHD"}, "1.234"},
		{"bhd_fils", domain.Money{Amount: 5, Currency: "BHD"}, "0.005"},
		{"bhd_min", domain.Money{Amount: math.MinInt64, Currency: "BHD"}, "-9223372036854775.808"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.money.String()
			if s != tt.want {
				t.Fatalf("%+v.String() = %q, want %q", tt.money, s, tt.want)
			}
			back, err := domain.ParseMoney(s, tt.money.Currency)
			if err != nil || back != tt.money {
				t.Errorf("ParseMoney(%q, %s) = %+v, %v; want %+v", s, tt.money.Currency, back, err, tt.money)
			}
		})
	}
}

func TestMoneyStringUnknownCurrency(t *testing.T) {
	if got := (domain.Money{Amount: -1250, Currency: "XXX"}).String(); got != "-1250" {
		t.Errorf("String() = %q, want the plain minor units %q", got, "-1250")
	}
}

// exponentCurrency is a currency for each minor-unit exponent in use.
var exponentCurrency = map[int]string{0: "JPY", 2: "USD", 3: "BHD"}

func TestFormatMinorRoundTrips(t *testing.T) {
	amounts := []int64{0, 1, -1, 9, -9, 10, 99, 100, -100, 999, 1000, 123456789,
		math.MaxInt64, math.MaxInt64 - 1, math.MinInt64 + 1, math.MinInt64}
	for exp, currency := range exponentCurrency {
		for _, a := range amounts {
			t.Run(fmt.Sprintf("exp%d/%d", exp, a), func(t *testing.T) {
				s := domain.FormatMinor(a, exp)
				if want := bigFormat(a, exp); s != want {
					t.Fatalf("FormatMinor(%d, %d) = %q, want %q", a, exp, s, want)
				}
				back, err := domain.ParseMoney(s, currency)
				if err != nil || back.Amount != a {
					t.Errorf("ParseMoney(%q, %s) = %+v, %v; want amount %d", s, currency, back, err, a)
				}
			})
		}
	}
}

// bigFormat is FormatMinor done the slow, obvious way.
func bigFormat(amount int64, exp int) string {
	r := new(big.Rat).SetFrac(big.NewInt(amount), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(exp)), nil))
	return r.FloatString(exp)
}

// plainDecimal is the grammar ParseMoney accepts, by exponent.
var plainDecimal = map[int]*regexp.Regexp{
	0: regexp.MustCompile(`^-?[0-9]+$`),
	2: regexp.MustCompile(`^-?[0-9]+(\.[0-9]{1,2})?$`),
	3: regexp.MustCompile(`^-?[0-9]+(\.[0-9]{1,3})?$`),
}

// FuzzParseMoney checks that ParseMoney never panics, fails only with its
// typed errors, agrees with math/big on what it accepts and the value, and
// that String parses back to the same Money.
func FuzzParseMoney(f *testing.F) {
	currencies := []string{"USD", "JPY", "BHD", "XXX"}
	for _, s := range []string{
		"12.50", "12.5", "0.01", "-1.00", "12.505", "1e3", "", ".5", "5.", "abc", "+1", " 1",
		"100", "1.5", "1.234", "92233720368547758.07", "92233720368547758.08",
		"-92233720368547758.08", "9223372036854775807", "-9223372036854775808", "-0", "0.00",
	} {
		for i := range currencies {
			f.Add(s, uint8(i))
		}
	}
	f.Fuzz(func(t *testing.T, s string, c uint8) {
		currency := currencies[int(c)%len(currencies)]
		m, err := domain.ParseMoney(s, currency)
		exp, expErr := domain.CurrencyExponent(currency)
		if expErr != nil {
			if !errors.Is(err, domain.ErrUnknownCurrency) {
				t.Fatalf("ParseMoney(%q, %s) = %+v, %v; want %v", s, currency, m, err, domain.ErrUnknownCurrency)
			}
			return
		}
		want, valid := bigParse(s, exp)
		if !valid {
			if !errors.Is(err, domain.ErrInvalidAmount) {
				t.Fatalf("ParseMoney(%q, %s) = %+v, %v; want %v", s, currency, m, err, domain.ErrInvalidAmount)
			}
			return
		}
		if err != nil {
			t.Fatalf("ParseMoney(%q, %s): %v; want %d", s, currency, err, want)
		}
		if m.Amount != want || m.Currency != currency {
			t.Fatalf("ParseMoney(%q, %s) = %+v, want amount %d", s, currency, m, want)
		}
		str := m.String()
		back, err := domain.ParseMoney(str, currency)
		if err != nil || back != m {
			t.Fatalf("ParseMoney(String() = %q) = %+v, %v; want %+v", str, back, err, m)
		}
		if again := back.String(); again != str {
			t.Fatalf("String not canonical: %q then %q", str, again)
		}
	})
}

// bigParse is the reference: a plain decimal with at most exp places whose
// value in minor units fits in int64.
func bigParse(s string, exp int) (int64, bool) {
	if !plainDecimal[exp].MatchString(s) {
		return 0, false
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return 0, false
	}
	r.Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(exp)), nil)))
	if !r.IsInt() || !r.Num().IsInt64() {
		return 0, false
	}
	return r.Num().Int64(), true
}
