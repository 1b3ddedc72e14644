namespace InterroGate.Training;

/// <summary>Learning-rate schedules as a factor of the base rate.</summary>
public enum ScheduleKind { Constant, Step, Poly, Cosine }

/// <summary>
/// Step: × <see cref="Gamma"/> every <see cref="StepSize"/> epochs. Poly: (1 − progress)^<see cref="Power"/>
/// per step. Cosine: ½(1 + cos(π · progress)) per step. The defaults are the training default (step, × 1/3 every 20
/// epochs), so a configuration that gives some of the schedule's keys keeps the default of the others.
/// </summary>
public sealed record LearningRateSchedule(ScheduleKind Kind = ScheduleKind.Step, int StepSize = 20, double Gamma = 1.0 / 3, double Power = 0.9)
{
    /// <summary>Factor at <paramref name="epoch"/> and <paramref name="step"/> (both from 0) of a run.</summary>
    public double Factor(int epoch, int step, int stepsPerEpoch, int epochs)
    {
        double progress = Math.Clamp((epoch * (double)stepsPerEpoch + step) / Math.Max(1, epochs * (double)stepsPerEpoch), 0, 1);
        return Kind switch
        {
            ScheduleKind.Constant => 1.0,
            ScheduleKind.Step => Math.Pow(Gamma, epoch / StepSize),
            ScheduleKind.Poly => Math.Pow(1 - progress, Power),
            ScheduleKind.Cosine => 0.5 * (1 + Math.Cos(Math.PI * progress)),
            _ => throw new ArgumentOutOfRangeException(nameof(Kind)),
        };
    }
}
